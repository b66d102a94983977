"""`python -m detection` prints which Detectron2 build this environment uses."""

from .compat import describe

print(describe())
