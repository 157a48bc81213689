"""Progress of long calls (benchmarking bricks, the lower-bound analysis): one line that updates
in place, with counts, elapsed time and an estimate of the time left. The same line works in a
terminal and in a Jupyter notebook (both honour carriage returns in stderr).

``progress=None`` (the default of the long calls) shows it when someone is watching: stderr is
a terminal, or the code runs in a notebook kernel. ``True`` always, ``False`` never, and a
callable ``f(done, total, elapsed_s, label)`` receives the updates instead.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, Union

ProgressArg = Union[None, bool, Callable[[int, int, float, str], None]]


def _watched() -> bool:
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Line:
    """Writes ``unit 12/40 [0:31 elapsed, ~1:10 left] label`` to stderr, at most every 0.2 s."""

    def __init__(self, unit: str, stream=None):
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()
        self.last = 0.0
        self.width = 0

    def __call__(self, done: int, total: int, elapsed: float, label: str) -> None:
        now = time.monotonic()
        final = total > 0 and done >= total
        if not final and now - self.last < 0.2:
            return
        self.last = now
        if total <= 0:
            text = f"{self.unit}: {label}"
        else:
            left = f", ~{_clock(elapsed / done * (total - done))} left" if 0 < done < total else ""
            text = f"{self.unit} {done}/{total} [{_clock(elapsed)} elapsed{left}] {label}"
        text = text[:100]
        pad = max(0, self.width - len(text))
        self.width = len(text)
        self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
        self.stream.flush()
        if final:
            self.width = 0


def callback(progress: ProgressArg, unit: str) -> Optional[Callable[[int, int, float, str], None]]:
    """The callback for a ``progress=`` argument, or None for no progress."""
    if callable(progress):
        return progress
    if progress is None:
        progress = _watched()
    if progress is True:
        return Line(unit)
    if progress is False:
        return None
    raise TypeError(f"progress must be None, True, False or a callable, got {type(progress).__name__}")
