"""Exit codes and the one-line wording of "could not do the job" errors, for every command.

Why a module: `1` means "acknowledged nodes were lost" under `--fail-on-loss`, so a full
disk, a read-only directory or an unreachable server must not exit 1 (a CI job would read
it as a reproduced loss). They exit `CANNOT` (4) with one line naming the path or host, in
words ("no space left on device writing runs/x/events.jsonl"), never Python's exception
names or its "[Errno 28]" form.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import re
from collections.abc import Iterable
from types import TracebackType
from typing import Any

__all__ = [
    "DONE", "LOST", "BAD_INPUT", "INCONCLUSIVE", "CANNOT", "INTERRUPTED", "EXIT_CODES",
    "CannotDoTheJob", "describe_os_error", "os_error_reason", "NOT_WRITABLE", "exit_codes_epilog", "add_command",
]

DONE = 0
LOST = 1
BAD_INPUT = 2
INCONCLUSIVE = 3
CANNOT = 4
INTERRUPTED = 130

#: Every exit code, what it means (the README's table and each command's --help say the same).
EXIT_CODES: dict[int, str] = {
    DONE: "done (the verdict or result was printed)",
    LOST: "acknowledged nodes were lost (only with --fail-on-loss)",
    BAD_INPUT: "bad input: one line naming the flag",
    INCONCLUSIVE: "the run is inconclusive (only with --fail-on-loss)",
    CANNOT: "could not do the job (disk full, no permission, read-only, server unreachable): one line "
            "naming the path or host",
    INTERRUPTED: "interrupted (Ctrl-C)",
}


class CannotDoTheJob(Exception):
    """The job could not be done for a reason outside the input (exit 4); `str()` is the one line."""


#: errnos that only a write raises: "... writing PATH".
_WRITING = {errno.ENOSPC, errno.EROFS, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: The temporary name `_atomic` writes beside a target: `.NAME.1a2b3c4d.tmp` -> NAME.
_ATOMIC_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


#: errnos that say a place cannot be written for a reason other than the path typed (exit 4;
#: a path that cannot exist, like a file where a folder should be, is bad input, exit 2).
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EIO,
                          getattr(errno, "EDQUOT", errno.ENOSPC)})


def os_error_reason(exc: OSError) -> str:
    """The errno's words, lower-cased ("no space left on device"), without "[Errno N]" or a path."""
    return _reason(exc)


def _reason(exc: OSError) -> str:
    """The errno's words, lower-cased ("no space left on device"), without "[Errno N]"."""
    if exc.errno:
        text = os.strerror(exc.errno)
    else:
        text = exc.strerror or (str(exc.args[0]) if exc.args else "") or "input/output error"
    return text[:1].lower() + text[1:]


def _shown(path: Any) -> str | None:
    """A path as the user knows it: the target, not `_atomic`'s temporary file beside it."""
    if path is None:
        return None
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    head, tail = os.path.split(text)
    match = _ATOMIC_TEMP.match(tail)
    return os.path.join(head, match["name"]) if match else text


def _file_in_traceback(exc: BaseException) -> str | None:
    """The open file a failed write was writing, when the error itself names none.

    A buffered file's `write()`/`flush()` raises OSError(ENOSPC) without a file name; the
    frame that called it holds the file object (e.g. the recorder's `fh`). Searched from
    the innermost frame out, in the error and the error it interrupted (a close after a
    failed flush raises again)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = []
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):
            names = sorted({name for value in frame.f_locals.values()
                            if isinstance(value, io.IOBase) and isinstance(name := getattr(value, "name", None), str)})
            if len(names) == 1:
                return names[0]
            if names:  # several open files in the failing frame: which one is unknown, their folder is not
                try:
                    return os.path.commonpath(names)
                except ValueError:  # relative and absolute names mixed: say nothing rather than guess
                    return None
        current = current.__context__
    return None


def describe_os_error(exc: OSError, path: Any = None) -> str:
    """One line in words: what went wrong and where, e.g. "no space left on device writing
    runs/x/events.jsonl", "permission denied: runs/x/report.json", "connection refused".

    `path`: where the command was working (its run directory), named when the error
    itself names no file and no open file is found in its traceback."""
    reason = _reason(exc)
    where = _shown(exc.filename2 if exc.filename2 is not None else exc.filename)
    if where is None:
        where = _shown(_file_in_traceback(exc))
    if where is None:
        where = _shown(path)
    if where is None:
        return reason
    if exc.errno in _WRITING:
        return f"{reason} writing {where}"
    return f"{reason}: {where}"


def exit_codes_epilog(*codes: int) -> str:
    """The exit codes a command can return, for its --help epilog."""
    width = max(len(str(c)) for c in codes)
    return "exit codes:\n" + "\n".join(f"  {str(c).rjust(width)}  {EXIT_CODES[c]}" for c in codes)


def add_command(subparsers: Any, name: str, codes: Iterable[int], **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with the exit codes it can return (`exit_codes_epilog`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, epilog=exit_codes_epilog(*codes), formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    return parser
