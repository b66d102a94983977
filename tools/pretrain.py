#!/usr/bin/env python
"""Contrastive pretraining (MoCo v1/v2, InfoMin) of a ResNet backbone.

Usage and options: python tools/pretrain.py --help. The command lives in
pretrain/commands/pretrain.py (also installed as the console script infomin-pretrain)."""

from _command import run_command

run_command("pretrain")
