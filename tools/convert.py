#!/usr/bin/env python
"""Export a pretrained backbone as Detectron2 weights.

Usage and options: python tools/convert.py --help. The command lives in
pretrain/commands/convert.py (also installed as the console script infomin-convert)."""

from _command import run_command

run_command("convert")
