"""The desk's routes, one router per room: the pages and sign-in, the alerts, the reference data."""
