"""Detectron2 side of the toolkit: build compatibility, extra modules, dataset registration, training."""
from .compat import enable as _enable_detectron2

# Before anything imports detectron2: supply the placeholder for missing compiled ops (compat.py).
_enable_detectron2()
