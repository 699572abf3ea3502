"""Textual's terminal driver, made safe for a terminal that goes away under the app.

When the terminal window closes (or ssh drops), the kernel hangs the tty up and sends
SIGHUP and SIGCONT. With Textual's own driver the app then hung forever instead of
exiting: SIGCONT made the driver "resume" (its tty check says not a tty, so it skips it)
and start a new writer thread; that thread's first write failed with EIO and killed it,
its queue (30 writes) filled, and the next write, in `App._shutdown`, waited on the full
queue for good, before anything was saved. Seen with py-spy: the UI thread in
`Queue.put`, the old writer thread idle in `Queue.get` of another queue.

So, here:
- the writer thread survives a failed write: it notes that the terminal is gone, tells
  the app once, and from then on drops what it is given (there is nowhere to write it);
- SIGCONT resumes only a terminal that is still there (Ctrl+Z, then `fg`);
- a read that fails because the terminal went away tells the app the same, instead of
  Textual's panic, which prints a traceback to a terminal that is not there.
The app then ends as on SIGTERM: the running generation is cancelled and saved.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import IO, Any

from textual.drivers._writer_thread import WriterThread
from textual.drivers.linux_driver import LinuxDriver


class SafeWriterThread(WriterThread):
    """Textual's writer thread, which outlives a terminal that has gone away."""

    def __init__(self, file: IO[str], gone: Callable[[], None]) -> None:
        super().__init__(file)
        self._gone = gone
        self.failed = False

    def run(self) -> None:
        get, qsize = self._queue.get, self._queue.qsize
        while True:
            text = get()
            if text is None:
                break
            if self.failed:
                continue  # drained, so a writer never waits on a full queue
            try:
                self._file.write(text)
                if qsize() == 0:
                    self._file.flush()
            except (OSError, ValueError):  # EIO / EPIPE: hung up; ValueError: the file was closed
                self.failed = True
                self._gone()
        if not self.failed:
            try:
                self._file.flush()
            except (OSError, ValueError):
                pass

    def stop(self) -> None:
        self._queue.put(None)
        self.join(5)


class TerminalDriver(LinuxDriver):
    """LinuxDriver with the safe writer thread; it calls the app's `end_soon()` (from any
    thread) when the terminal has gone away."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._told = threading.Event()

    def terminal_gone(self) -> None:
        if not self._told.is_set():
            self._told.set()
            gone = getattr(self._app, "end_soon", None)
            if gone is not None:
                gone()

    def _is_there(self) -> bool:
        """The terminal is still there: a hung-up tty is no longer one."""
        try:
            return os.isatty(self.fileno)
        except (OSError, ValueError):
            return False

    def start_application_mode(self) -> None:
        if self._told.is_set():
            return  # nothing to start on a terminal that has gone
        super().start_application_mode()  # type: ignore[no-untyped-call]
        plain = self._writer_thread
        if plain is not None and self._file is not None and not isinstance(plain, SafeWriterThread):
            plain.stop()  # writes out what starting queued (the terminal is there), then ends
            self._writer_thread = SafeWriterThread(self._file, self.terminal_gone)
            self._writer_thread.start()

    def _sigcont_application(self, *args: Any) -> None:
        if not self._is_there():  # SIGCONT after SIGHUP when the window closed: nothing to resume
            self.terminal_gone()
            return
        super()._sigcont_application(*args)

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        except OSError:  # the terminal went away under the read
            self.terminal_gone()
