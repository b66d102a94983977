"""What every entry point does with errors: a UserError becomes one line on stderr and exit
status 2; Ctrl-C becomes one line and status 130 (no traceback either way)."""
from __future__ import annotations

import sys
from typing import Callable

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_entry_point(main: Callable[[], object], interrupted_hint: str = "") -> None:
    """Call main() and exit with its status: 0, 2 after a UserError, 130 after Ctrl-C.
    `interrupted_hint` (e.g. how to resume) is added to the Ctrl-C line."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted" + (f"; {interrupted_hint}" if interrupted_hint else ""),
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
