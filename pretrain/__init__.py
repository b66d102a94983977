"""Contrastive (MoCo / InfoMin) pretraining of ResNet backbones."""
