"""Helpers every stage uses (pretraining, readouts, detection, SLURM): errors and entry points.
Neutral ground: nothing here imports the pretraining engine, the models or Detectron2."""
