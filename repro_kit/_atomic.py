"""Write-then-rename: a reader sees the old file or the new one, never half of one.

The file ends up with the mode a plain `open(path, "w")` would give it: 0666 & ~umask for
a new file (the kernel applies the umask to the temp file's creation, as it does for
open(); nothing reads or changes the process-wide umask, so no thread can race it), and
the existing file's permission bits when one is replaced. `tempfile.mkstemp` would make
it 0600, unlike the run's other files.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["write_text_atomic", "write_bytes_atomic"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_temp(target: Path) -> tuple[int, Path]:
    """A new file beside `target`, created like open() would (mode 0o666, umask applied by the kernel)."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (fsync'd temp file in the same folder, then rename)."""
    target = Path(path)
    fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            try:  # replacing a file keeps its permission bits, as open(path, "w") would
                os.fchmod(fh.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            except (FileNotFoundError, NotADirectoryError):
                pass
            except (AttributeError, PermissionError):  # no fchmod (Windows), or a file we do not own
                pass
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (fsync'd temp file in the same folder, then rename)."""
    return write_bytes_atomic(path, text.encode("utf-8"))
