"""What every entry point does with errors: a UserError, a full disk or a folder that cannot be
written becomes one line on stderr and exit status 2; Ctrl-C becomes one line and status 130
(no traceback either way). Also: switches
accepted anywhere on a command line that ends in KEY VALUE overrides."""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Callable, Iterable, Union

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# Errors of a full disk or a folder that cannot be written: the user's to fix, one line.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)

Hint = Union[str, Callable[[], str]]
# A hint a run registers once it knows its output folder (set_interrupted_hint); used when the
# entry point passes none.
_registered_hint: Hint = ""


def set_interrupted_hint(hint: Hint) -> None:
    """What the Ctrl-C line adds, e.g. the checkpoint to resume from; a callable is evaluated
    when the interrupt arrives, so it can name the newest checkpoint."""
    global _registered_hint
    _registered_hint = hint


def _hint_text(hint: Hint) -> str:
    try:
        return hint() if callable(hint) else hint
    except Exception:  # the hint must never hide the interrupt itself
        return ""


def run_entry_point(main: Callable[[], object], interrupted_hint: Hint = "") -> None:
    """Call main() and exit with its status: 0, 2 after a UserError, 130 after Ctrl-C.
    `interrupted_hint` (e.g. how to resume; a string or a callable returning one, default the
    one set_interrupted_hint registered) is added to the Ctrl-C line."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        # The atomic writes leave no partial file; the user's fix is the disk or the folder.
        print(
            f"error: {error.filename or 'writing'}: {error.strerror} (free space or choose a "
            "writable folder; files being written were not left half-written)",
            file=sys.stderr,
        )
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        hint = _hint_text(interrupted_hint or _registered_hint)
        print("interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def pull_flags(opts: Iterable[str], flags: Iterable[str]) -> tuple[list[str], set[str]]:
    """Split `opts` (argparse's REMAINDER of KEY VALUE pairs, which swallows every switch after
    the first pair) into (the KEY VALUE tokens, the switches of `flags` found among them).
    Only switches without a value belong in `flags`."""
    wanted, found, rest = set(flags), set(), []
    for token in opts:
        if token in wanted:
            found.add(token)
        else:
            rest.append(token)
    return rest, found


def apply_trailing_flags(args, flags: Iterable[str]) -> None:
    """pull_flags on `args.opts`, setting `args.<flag>` True for each found (--eval-only ->
    args.eval_only), as if it had come before the KEY VALUE pairs."""
    args.opts, found = pull_flags(args.opts, flags)
    for flag in found:
        setattr(args, flag.lstrip("-").replace("-", "_"), True)


def run_folder_parser(description: str) -> argparse.ArgumentParser:
    """The command line of a stage that trains into OUTPUT_DIR (pretraining, the supervised
    baseline, the linear readout): --config-file, --resume, --force and KEY VALUE overrides; add
    the stage's own options, then parse with parse_run_folder_args."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT_DIR/last_checkpoint if there is one",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="start over in a non-empty OUTPUT_DIR, deleting the run there",
    )
    return parser


def parse_run_folder_args(
    parser: argparse.ArgumentParser, argv=None, flags: Iterable[str] = ()
) -> argparse.Namespace:
    """Parse after adding the KEY VALUE overrides; --resume, --force and `flags` are also
    accepted after them."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    apply_trailing_flags(args, ("--resume", "--force", *flags))
    return args
