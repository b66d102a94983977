#!/usr/bin/env python
"""The point of the project in one command (make demo).

Usage and options: python tools/demo.py --help. The command lives in
pretrain/commands/demo.py (also installed as the console script infomin-demo)."""

from _command import run_command

run_command("demo")
