"""Plain-text Detectron2 logs. Detectron2 writes colour codes into the messages themselves (the
config printed through pygments, tables through termcolor), so its plain file formatter still
leaves them in log.txt; this strips them from every log stream that is not a terminal."""

from __future__ import annotations

import logging
import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LOGGERS = ("detectron2", "fvcore", "d2")


class PlainFormatter(logging.Formatter):
    """A formatter that drops ANSI escape sequences from what `inner` formats."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", self.inner.format(record))


def _is_terminal(handler: logging.Handler) -> bool:
    try:
        return handler.stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def plain_text_logs(output_dir: str | None = None, names=LOGGERS) -> int:
    """Wrap the formatter of each handler of the loggers `names` that writes to a file or a pipe
    (not a terminal); returns how many were wrapped. With `output_dir`, first create the handlers
    detectron2's default_setup creates, by the same (cached) setup_logger calls, so that the
    config it prints next is plain text too."""
    if output_dir is not None:
        from detectron2.utils import comm
        from detectron2.utils.logger import setup_logger

        setup_logger(output_dir, distributed_rank=comm.get_rank(), name="fvcore")
        setup_logger(output_dir, distributed_rank=comm.get_rank())
    wrapped = 0
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler.formatter, PlainFormatter) or _is_terminal(handler):
                continue
            handler.setFormatter(PlainFormatter(handler.formatter or logging.Formatter()))
            wrapped += 1
    return wrapped
