#!/usr/bin/env python
"""Supervised pretraining baseline: a ResNet trained with labels on class folders (ImageNet

Usage and options: python tools/supervised.py --help. The command lives in
pretrain/commands/supervised.py (also installed as the console script infomin-supervised)."""

from _command import run_command

run_command("supervised")
