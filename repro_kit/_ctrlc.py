"""Every Ctrl-C reaches the menu at once, even one that lands while readline draws its prompt.

CPython runs a SIGINT handler only when the main thread returns to Python code. While
`input()` waits, readline sits in `select()` on stdin and checks for signals only when that
`select()` is interrupted; a Ctrl-C that arrives just before it (while the prompt is being
drawn, say) sets the flag and then waits for the next key, so the user presses Ctrl-C and
nothing happens. Here the C-level handler's wakeup byte (`signal.set_wakeup_fd`) is watched by
a thread: if the Python handler has not taken it a moment later, the thread sends the main
thread SIGINT again, which does interrupt `select()`. The two deliveries are one Ctrl-C: the
Python handler counts the bytes it drains against the nudges sent, so a nudge that arrives
after its Ctrl-C was handled is ignored.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from types import FrameType, TracebackType

__all__ = ["CtrlC"]

#: How long a Ctrl-C may wait for the main thread before it is sent again.
NUDGE_AFTER_S = 0.05


class CtrlC:
    """`with CtrlC():` around a menu's loop (in the main thread); a no-op elsewhere."""

    def __init__(self) -> None:
        self._active = False
        self._lock = threading.Lock()
        self._nudges = 0  # sent and not yet drained
        self._closed = threading.Event()

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        try:
            self._old_fd = signal.set_wakeup_fd(self._write)
        except ValueError:  # not the main interpreter
            os.close(self._read)
            os.close(self._write)
            return self
        self._old_handler = signal.signal(signal.SIGINT, self._handler)
        self._active = True
        self._thread = threading.Thread(target=self._watch, name="repro_kit: Ctrl-C", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._active:
            return
        self._active = False
        self._closed.set()
        signal.signal(signal.SIGINT, self._old_handler)
        signal.set_wakeup_fd(self._old_fd)
        os.write(self._write, b"\0")  # wake the watcher so it sees it is closed
        self._thread.join(1.0)
        os.close(self._read)
        os.close(self._write)

    def _pending(self) -> bool:
        return bool(select.select([self._read], [], [], 0)[0])

    def _watch(self) -> None:
        main = threading.main_thread().ident
        while not self._closed.is_set():
            select.select([self._read], [], [])
            if self._closed.wait(NUDGE_AFTER_S) or main is None:
                return
            with self._lock:
                if not self._pending():
                    continue  # the handler took it
                self._nudges += 1
            signal.pthread_kill(main, signal.SIGINT)  # interrupts the select() readline waits in
            self._closed.wait(NUDGE_AFTER_S)  # give the handler its turn before looking again

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            try:
                drained = len(os.read(self._read, 4096))
            except BlockingIOError:
                drained = 0
            real = drained - self._nudges
            self._nudges = max(0, self._nudges - drained)
        if real > 0 or drained == 0:
            raise KeyboardInterrupt
