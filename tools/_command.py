"""How the files in tools/ run their command (pretrain/commands/<name>.py).

Python puts the folder of the file it runs first on the import path: here tools/, where
tools/pretrain.py would stand in for the `pretrain` package. So a tool does not import the project
itself: it replaces its process with `python -m pretrain.commands.<name>` (same process id,
arguments, environment and exit status). The installed project is imported, as by the console
scripts of setup.cfg (`make install` installs it, editable); -P (Python 3.11+) keeps the working
folder off the import path too."""
import os
import sys


def run_command(name: str) -> None:
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    os.execv(sys.executable, [sys.executable, *safe_path, "-m", f"pretrain.commands.{name}",
                              *sys.argv[1:]])
