"""Training loop, checkpoints and process groups."""
