"""The progress bar long commands draw on stderr (stdout stays clean for --json)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``COMMAND [####......] 12/340 takes 3.1 s  label``: redrawn in place on a terminal;
    elsewhere (logs, CI) a plain line at most every ``every_s`` seconds, and the last one."""

    def __init__(self, command: str, total: int, *, stream: TextIO | None = None, width: int = 30,
                 every_s: float = 2.0) -> None:
        self.command, self.total, self.width, self.every_s = command, total, width, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.started = self.last = time.perf_counter()
        self.drawn = False

    def step(self, label: str = "") -> None:
        self.done += 1
        now = time.perf_counter()
        filled = self.width * self.done // max(self.total, 1)
        line = (f"{self.command} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} takes "
                f"{now - self.started:6.1f} s  {label}")
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:200])
            self.drawn = True
        elif now - self.last >= self.every_s or self.done == self.total:
            self.stream.write(line + "\n")
            self.last = now
        self.stream.flush()

    def close(self) -> None:
        """Ends the in-place line on a terminal."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
