"""Detectron2 side of the toolkit: build compatibility, extra modules, dataset registration,
training."""

from .compat import install_import_hook as _install_import_hook

# Before anything imports detectron2: supply the placeholder for missing compiled ops (compat.py).
_install_import_hook()
