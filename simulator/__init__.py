"""DroneCop simulator."""
