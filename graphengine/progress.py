"""Telling the user where time goes, on stderr: one-line notices and progress bars.

Everything here writes to ``sys.stderr`` (never stdout, which carries results) and is silenced
by :func:`set_quiet` (the CLI's ``--quiet``) or the :func:`quiet` context. Three things use it:

- :func:`notice`: a one-line message for a slow stage (exporting a model, building a graph);
- :func:`announce_compilation`: installs a listener on Numba's compile event so that the first
  time a graphengine kernel is really compiled (not loaded from Numba's on-disk cache) one line
  ``compiling kernels (first run on this machine)…`` is printed;
- :class:`Progress`: a bar with count, rate and ETA; ``Progress(..., after=1.0)`` stays silent
  unless the work is still running after that many seconds (the backward walk uses it, so only
  a backward pass over about a second shows progress).

On a terminal the bar redraws one line in place (``\\r``); otherwise (a log file, a pipe) it
prints a full line at most every ``interval`` seconds, and a last line when it closes.

>>> import io
>>> s = io.StringIO()
>>> bar = Progress(4, "examples", stream=s, interval=0.0)
>>> for _ in range(4):
...     bar.update()
>>> bar.close()
>>> s.getvalue().splitlines()[-1].startswith("examples: 4/4 (100%)")
True
>>> with quiet():
...     notice("not shown", stream=s)
>>> "not shown" in s.getvalue()
False
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import IO, Iterator, Optional

__all__ = ["set_quiet", "is_quiet", "quiet", "notice", "slow_stage", "Progress", "announce_compilation", "format_duration"]

_state = {"quiet": False}
_compile_lock = threading.Lock()
_compile_state = {"installed": False, "announced": False}
COMPILE_NOTICE = "compiling kernels (first run on this machine)…"


def set_quiet(value: bool = True) -> None:
    """Silence (or re-enable) every notice and bar of this process."""
    _state["quiet"] = bool(value)


def is_quiet() -> bool:
    return _state["quiet"]


@contextlib.contextmanager
def quiet(value: bool = True) -> Iterator[None]:
    """Silence notices and bars for the duration of a ``with`` block."""
    old = _state["quiet"]
    _state["quiet"] = bool(value)
    try:
        yield
    finally:
        _state["quiet"] = old


def _write(text: str, stream: Optional[IO] = None) -> None:
    out = stream if stream is not None else sys.stderr
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError):  # a closed or broken stderr must not stop the work
        pass


def notice(message: str, stream: Optional[IO] = None) -> None:
    """Print ``message`` as one line on stderr unless quiet."""
    if not _state["quiet"]:
        _write(" ".join(str(message).split()) + "\n", stream)


@contextlib.contextmanager
def slow_stage(message: str, after: float = 1.0, stream: Optional[IO] = None) -> Iterator[None]:
    """Print ``message`` (one line) if the ``with`` block is still running after ``after``
    seconds, and how long it took when it ends; a fast block (or one failing fast) prints nothing.

    >>> import io
    >>> s = io.StringIO()
    >>> with slow_stage("exporting", after=0.0, stream=s):
    ...     time.sleep(0.05)
    >>> s.getvalue().startswith("exporting")
    True
    """
    shown = threading.Event()

    def show():
        if not _state["quiet"]:
            shown.set()
            notice(message, stream)

    timer = threading.Timer(after, show)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
    if shown.is_set():
        notice(f"  done in {format_duration(time.perf_counter() - t0)}", stream)


def format_duration(seconds: float) -> str:
    """``75.2`` → ``'1:15'``; ``4000`` → ``'1:06:40'``.

    >>> format_duration(5), format_duration(75.2), format_duration(4000)
    ('0:05', '1:15', '1:06:40')
    """
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A progress bar on stderr: ``DESC: DONE/TOTAL (P%) RATE UNIT/s, ETA M:SS``.

    ``after``: print nothing until this many seconds have passed (work that finishes sooner
    stays silent). ``interval``: at most one redraw per this many seconds. ``initial``: work
    already done before this run (a resumed run); the rate counts only this run's work.
    """

    def __init__(self, total: Optional[int], desc: str, unit: str = "it", stream: Optional[IO] = None,
                 after: float = 0.0, interval: float = 0.5, initial: int = 0):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream
        self.after, self.interval = after, interval
        self.initial = self.done = initial
        self.t0 = time.perf_counter()
        self.last = -1e9
        self.shown = False
        self.closed = False
        out = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        if not self.tty and interval > 0:  # a log file gets a line every few seconds, not a redraw stream
            self.interval = max(interval, 5.0)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        new = self.done - self.initial
        rate = new / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.done}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 0.1 or new == 0 else f"{1 / rate:.3g} s/{self.unit}")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        else:
            parts.append(f"elapsed {format_duration(elapsed)}")
        return ", ".join(parts)

    def update(self, n: int = 1) -> None:
        self.done += n
        if _state["quiet"] or self.closed:
            return
        now = time.perf_counter()
        if now - self.t0 < self.after or now - self.last < self.interval:
            return
        self.last = now
        self.shown = True
        _write(("\r" + self.line() + "\x1b[K") if self.tty else self.line() + "\n", self.stream)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if _state["quiet"]:
            return
        if self.shown or (self.after == 0 and self.done > self.initial):
            _write(("\r" + self.line() + "\x1b[K\n") if self.tty else self.line() + "\n", self.stream)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def announce_compilation(prefix: str = "graphengine.") -> None:
    """Print :data:`COMPILE_NOTICE` once per process when Numba really compiles a function of a
    module under ``prefix`` (a load from Numba's on-disk cache fires no compile event, so a
    machine with a warm cache prints nothing). Installing twice is a no-op; without Numba's
    event API it does nothing."""
    with _compile_lock:
        if _compile_state["installed"]:
            return
        _compile_state["installed"] = True
    try:
        from numba.core import event
    except ImportError:
        return

    class _Listener(event.Listener):
        def on_start(self, ev):
            if _compile_state["announced"]:
                return
            disp = (ev.data or {}).get("dispatcher") if isinstance(ev.data, dict) else None
            module = getattr(getattr(disp, "py_func", None), "__module__", "") or ""
            if module.startswith(prefix):
                _compile_state["announced"] = True
                notice(COMPILE_NOTICE)

        def on_end(self, ev):
            pass

    event.register("numba:compile", _Listener())
