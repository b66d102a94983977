"""SLURM launchers (submitit) for every stage of pretrain/stages.py (pretraining, readouts,
fine-tuning, supervised baseline, view learning, detection, sweeps): checked requests, one task
per GPU, requeued and resumed after a time-out or preemption."""
