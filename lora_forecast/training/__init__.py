"""Training: optimiser and schedule, early stopping, checkpoints, and the accelerate loop."""
