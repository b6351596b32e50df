"""DroneCop transforms."""
