"""DroneCop csv_ingest."""
