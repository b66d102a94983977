#!/usr/bin/env python
"""Sweep pretraining over a grid of config keys and plot readout accuracy against the information

Usage and options: python tools/sweep.py --help. The command lives in
pretrain/commands/sweep.py (also installed as the console script infomin-sweep)."""

from _command import run_command

run_command("sweep")
