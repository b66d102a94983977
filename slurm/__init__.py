"""SLURM launchers (submitit) for every stage: pretrain, lincls, detection."""
