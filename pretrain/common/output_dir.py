"""The rule every stage applies to its output folder before writing anything in it:

- missing or empty: a fresh run (the folder is created);
- holding files: refused, unless `resume` (continue the run that is there) or `force` (write
  into it anyway; files of the same names are overwritten, nothing else is deleted);
- temp files that a killed write left behind (`NAME.tmp`, `NAME.tmp.<pid>[.ext]` of a process
  that no longer runs) are removed first, and do not count as content;
- a start that failed before its first step (a typo, a dataset with bad images) leaves only its
  start files (the stage's `start_files`: its config.yaml, log, data-check results); they are
  not a run, and a rerun overwrites them without --force.

Call it once per run, from the main process only (other processes of the run may be writing
into the folder already)."""

from __future__ import annotations

import fnmatch
import os
import re

from fvcore.common.config import CfgNode

from .errors import OutputDirError

FRESH, RESUME = "fresh", "resume"
# What this project's atomic writes name their temp files: checkpoint_*.pth.tmp.<pid>,
# metrics_eval.json.tmp, OUT.pkl.tmp.<pid>.pkl (tools/convert.py).
_TEMP = re.compile(r"\.tmp(?:\.(\d+)(?:\.\w+)?)?$")
_SHOWN = 3  # how many of the folder's entries an error names


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temp_files(path: str) -> list[str]:
    """Delete the temp files of killed writes directly in `path` (not in subfolders); a temp
    file whose writer (the pid in its name) still runs here is left alone. Returns the names."""
    removed = []
    for name in sorted(os.listdir(path)):
        match = _TEMP.search(name)
        full = os.path.join(path, name)
        if not match or not os.path.isfile(full):
            continue
        if (
            match.group(1)
            and int(match.group(1)) != os.getpid()
            and _process_alive(int(match.group(1)))
        ):
            continue
        os.remove(full)
        removed.append(name)
    return removed


def derived_output_dir(stage: str, config_file: str, seed: int) -> str:
    """The folder of a run whose config leaves OUTPUT_DIR empty (every shipped config does):
    output/<stage>/<config file's name>_seed<SEED>, relative to the working directory (no seed
    part for a negative SEED, Detectron2's "draw one"). Runs of different configs or seeds never
    share a folder; rerunning one command finds its own run, which the rule below refuses
    without --resume or --force."""
    name = os.path.splitext(os.path.basename(config_file))[0] if config_file else "defaults"
    return os.path.join("output", stage, name if seed < 0 else f"{name}_seed{seed}")


def only_start_files(entries: list[str], start_files: tuple[str, ...]) -> bool:
    """Whether every entry matches one of the `start_files` patterns (fnmatch): what a start
    writes before its first step, not a run."""
    return all(any(fnmatch.fnmatch(name, pattern) for pattern in start_files) for name in entries)


def prepare_output_dir(
    path: str, resume: bool, force: bool, start_files: tuple[str, ...] = ()
) -> str:
    """Applies the rule above to `path`; returns "fresh" (nothing to continue: the folder was
    missing or empty, held only `start_files`, or `force`) or "resume" (`resume` and the folder
    holds a run). Raises OutputDirError when the folder holds files and neither flag is given,
    or cannot be used."""
    if not path:
        raise OutputDirError("OUTPUT_DIR is empty: name a folder for the run's outputs")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"OUTPUT_DIR {path}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"OUTPUT_DIR {path}: cannot be created ({err.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputDirError(f"OUTPUT_DIR {path}: not writable")
    remove_stale_temp_files(path)
    entries = sorted(os.listdir(path))
    if not entries or (not resume and only_start_files(entries, start_files)):
        return FRESH
    if resume:
        return RESUME
    if force:
        return FRESH
    shown = ", ".join(entries[:_SHOWN]) + (
        f" and {len(entries) - _SHOWN} more" if len(entries) > _SHOWN else ""
    )
    raise OutputDirError(
        f"OUTPUT_DIR {path} already holds a run ({shown}): pass --resume to "
        "continue it, --force to write over it, or set another OUTPUT_DIR"
    )


def _leaves(cfg: dict, prefix: str = "") -> dict:
    """{"A.B": value} for every leaf, values as YAML reads them back (tuples become lists)."""
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_leaves(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def config_differences(stored: str, requested, keys: tuple[str, ...]) -> list[tuple]:
    """(key, stored value, requested value) for each leaf under `keys` (keys or whole nodes) where
    the run's stored config (YAML text) and the requested one (a config node) differ, in key
    order; keys the stored config lacks (written before they existed) are not compared. What a
    resume may not change, for every stage."""
    old = _leaves(CfgNode.load_cfg(stored))
    new = _leaves(CfgNode.load_cfg(requested.dump()))
    return [
        (key, old[key], new[key])
        for key in sorted(new)
        if key in old
        and old[key] != new[key]
        and any(key == k or key.startswith(k + ".") for k in keys)
    ]
