#!/usr/bin/env python
"""Has pretraining learned to tell images apart yet? Fresh-key scores of checkpoints.

Usage and options: python tools/fresh_keys.py --help. The command lives in
pretrain/commands/fresh_keys.py (also installed as the console script infomin-fresh-keys)."""

from _command import run_command

run_command("fresh_keys")
