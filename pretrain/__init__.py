"""Self-supervised pretraining of ResNet backbones (InfoMin, MoCo v1/v2/v3, CMC, SimCLR, BYOL,
SimSiam, SwAV, DINO, InsDis, PIRL behind one method contract), the science of views (recipes,
I_NCE, sweeps, learned views), and the readouts (kNN, linear, fine-tuning, supervised)."""
