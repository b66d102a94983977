"""Helpers every stage uses (pretraining, readouts, detection, SLURM): errors and entry points
(errors, cli), process groups and their collectives (distributed), the way from a launcher's
environment to torch.distributed (distributed_env), the local launcher and free ports (launch),
checkpoint-before-requeue on a scheduler's signal (preemption), folders built once (build_once).
Neutral ground: nothing here imports the pretraining engine, the models or Detectron2."""
