"""DroneCop pipelines."""
