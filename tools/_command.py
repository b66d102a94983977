"""How the files in tools/ run their command (pretrain/commands/<name>.py).

Python puts the folder of the file it runs first on the import path: here tools/, where
tools/pretrain.py would stand in for the `pretrain` package. So a tool does not import the project
itself: it replaces its process with `python -m pretrain.commands.<name>` (same process id,
arguments, environment and exit status), as the console scripts of setup.cfg run it. `-m` looks
in the working folder first, then in the installed project (`make install`, editable): from the
repository root, as the README runs the tools, that is this checkout either way."""

import os
import sys


def run_command(name: str) -> None:
    os.execv(sys.executable, [sys.executable, "-m", f"pretrain.commands.{name}", *sys.argv[1:]])
