#!/usr/bin/env python
"""Learn InfoMin views (Sec. 4.2): train a pixel-wise invertible flow g against an I_NCE

Usage and options: python tools/learn_views.py --help. The command lives in
pretrain/commands/learn_views.py (also installed as the console script infomin-learn-views)."""

from _command import run_command

run_command("learn_views")
