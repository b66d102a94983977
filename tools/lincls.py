#!/usr/bin/env python
"""Linear readout of a pretrained backbone on labelled image folders (ImageNet layout).

Usage and options: python tools/lincls.py --help. The command lives in
pretrain/commands/lincls.py (also installed as the console script infomin-lincls)."""

from _command import run_command

run_command("lincls")
