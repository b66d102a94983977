"""Backbones, projection heads and the momentum-contrast model."""
