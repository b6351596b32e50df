"""DroneCop runners."""
