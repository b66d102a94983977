#!/usr/bin/env python
"""Write a views dataset of the demo's world with dialled sharing (InfoMin's toy).

Usage and options: python tools/view_world.py --help. The command lives in
pretrain/commands/view_world.py (also installed as the console script infomin-view-world)."""

from _command import run_command

run_command("view_world")
