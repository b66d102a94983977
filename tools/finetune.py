#!/usr/bin/env python
"""Semi-supervised fine-tuning of a pretrained backbone on a labelled fraction (SimCLR's protocol).

Usage and options: python tools/finetune.py --help. The command lives in
pretrain/commands/finetune.py (also installed as the console script infomin-finetune)."""

from _command import run_command

run_command("finetune")
