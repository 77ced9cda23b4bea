"""Training the slit encoder's models (needs the train extra: torch, ultralytics)."""
