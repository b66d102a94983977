#!/usr/bin/env python
"""Weighted kNN accuracy of a backbone's features on labelled image folders.

Usage and options: python tools/knn.py --help. The command lives in
pretrain/commands/knn.py (also installed as the console script infomin-knn)."""

from _command import run_command

run_command("knn")
