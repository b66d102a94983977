"""Readouts of a pretrained backbone: weighted kNN and the linear classifier."""
