"""The InfoMin / MoCo augmentation on the training device, batched (DATA.PIPELINE "gpu")."""
