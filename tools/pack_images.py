#!/usr/bin/env python
"""Pack an image folder (ImageNet layout, a flat folder or a .txt list) into one memory-mapped file

Usage and options: python tools/pack_images.py --help. The command lives in
pretrain/commands/pack_images.py (also installed as the console script infomin-pack-images)."""

from _command import run_command

run_command("pack_images")
