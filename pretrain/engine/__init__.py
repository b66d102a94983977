"""The training scaffold every stage steps on: the one loop and its hooks (loop.py), checkpoints,
run folders, schedules and the lr rule, metrics, progress, the seeded sampler. It imports only
the common layer (and losses' bound): the stages (pretraining.py, supervised.py, the linear
readout, view learning) sit above it."""
