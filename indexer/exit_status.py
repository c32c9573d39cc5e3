"""What a command's exit status and last line say when it could not do everything it was asked.

The error contract of both command lines (docs/errors.md):

- 0: done; 1: failed, with one line on stderr naming the thing and the reason (a domain error);
- 2: usage (an option or argument the command cannot take; click's own refusals);
- 3: partial: the command went on past some inputs (files it could not read) and lists them; every result
  it could compute is printed or written;
- 70: internal error: an exception nobody expected. One line says so and names the file its traceback was
  written to; the traceback itself never reaches the terminal.

Only the command-line layer imports this module; the library raises `ResoundError`s.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from indexer.errors import ParameterError, ResoundError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERNAL = 70  # sysexits.h's EX_SOFTWARE
LOG_DIR_ENV = "RESOUND_LOG_DIR"


def one_line(message: str) -> str:
    """`message` on one line: its line breaks and control characters (a file name may hold any) shown
    escaped (\\n, \\x1b), and a file name's bytes that are not UTF-8 as backslash escapes (indexer/text.py)."""
    from indexer.text import printable

    return printable(message).translate(_LINE_BREAKS)


# Every character str.splitlines() breaks at, and every other control character (a file name's ESC could
# recolour or rewrite the terminal), shown escaped: \n, \r, \x0b, \x1b, \x85, \u2028, ...
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode("ascii")
                for c in [*map(chr, range(0x20)), *map(chr, range(0x7f, 0xa0)), "\u2028", "\u2029"] if c != "\t"}


class CommandFailure(click.ClickException):
    """A domain error as the command line prints it: `Error: <one line>`, exit status 1."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str):
        super().__init__(one_line(message))


class InternalError(click.ClickException):
    """An unexpected exception: one line naming the traceback's file, exit status 70."""

    exit_code = EXIT_INTERNAL

    def format_message(self) -> str:
        return self.message

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        click.echo(self.message, err=True)


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush into a closed pipe says nothing
    (Python's own advice for SIGPIPE: docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (CliRunner's): nothing to flush into a pipe
        pass


def traceback_dir() -> Path:
    """Where tracebacks of internal errors go: $RESOUND_LOG_DIR, else <temp>/resound-errors."""
    return Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "resound-errors")


def write_traceback(error: BaseException, command: str) -> Path | None:
    """Write `error`'s traceback (with the command line) to a new file; its path, or None if none could be."""
    directory = traceback_dir()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{stamp}-{os.getpid()}-", suffix=".txt", dir=directory)
        text = f"command: {command}\n" + "".join(traceback.format_exception(error))
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
    except OSError:
        return None
    return Path(name)


def translate(error: BaseException, command: str) -> click.ClickException:
    """The click exception a command ends with for `error` raised from the library."""
    if isinstance(error, ParameterError) and not getattr(error, "content", False):
        return click.UsageError(one_line(str(error)))
    if isinstance(error, ResoundError):
        return CommandFailure(str(error))
    if isinstance(error, OSError) and error.filename is not None:
        # The machine refused (permissions, a full disk, a vanished file): the user's to fix, not a bug.
        name = os.fsdecode(error.filename) if isinstance(error.filename, bytes) else str(error.filename)
        return CommandFailure(f"{name}: {error.strerror or error}")
    path = write_traceback(error, command)
    where = f"traceback in {path}" if path else "no traceback could be written"
    return InternalError(one_line(f"internal error ({type(error).__name__}): please report it; {where}"))
