"""Progress lines with rate and ETA for long loops (training, collection, evaluation)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Mapping, TextIO


def format_duration(seconds: float) -> str:
    """1h02m, 4m18s or 7.3s."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Prints `desc 120/1000 (12%) 3.40 it/s elapsed 35.3s ETA 4m18s loss=0.12` at most every
    `every_s` seconds.

    The rate counts only work done in this process (a resumed run starts at `start`), so the ETA is
    honest after a restart. Compile time of the first step is excluded from the rate once a second
    update arrives.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        start: int = 0,
        every_s: float = 10.0,
        unit: str = "it",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.every_s = every_s
        self._stream = stream or sys.stdout
        self._clock = clock
        self._t0 = clock()
        self._start = self._done = start
        self._rate_t0 = self._rate_n0 = None
        self._last_print = -float("inf")

    @property
    def done(self) -> int:
        return self._done

    def rate(self) -> float:
        if self._rate_t0 is None:
            return float("nan")
        dt = self._clock() - self._rate_t0
        return (self._done - self._rate_n0) / dt if dt > 0 else float("nan")

    def update(
        self, n: int = 1, metrics: Mapping[str, Any] | None = None, *, force: bool = False
    ) -> str | None:
        """Advances by `n`; returns the printed line, or None when it was too soon to print."""
        if self._rate_t0 is None:
            # The first update usually includes compilation: measure the rate after it.
            self._done += n
            self._rate_t0, self._rate_n0 = self._clock(), self._done
        else:
            self._done += n
        now = self._clock()
        finished = self._done >= self.total
        if not (force or finished or now - self._last_print >= self.every_s):
            return None
        self._last_print = now
        line = self.line(metrics)
        print(line, file=self._stream, flush=True)
        return line

    def _rate_text(self, rate: float) -> str:
        """`2.00 it/s`; `67.3 s/update` for slow loops; `? it/s` before any timed work."""
        if rate != rate or self._done == self._rate_n0:
            return f"? {self.unit}/s"
        if rate < 0.1:
            singular = self.unit[:-1] if self.unit.endswith("s") else self.unit
            return f"{1.0 / rate:.1f} s/{singular}"
        return f"{rate:.2f} {self.unit}/s"

    def line(self, metrics: Mapping[str, Any] | None = None) -> str:
        rate = self.rate()
        eta = (self.total - self._done) / rate if rate == rate and rate > 0 else float("nan")
        pct = 100.0 * self._done / max(self.total, 1)
        parts = [
            f"{self.desc} {self._done}/{self.total} ({pct:.0f}%)",
            self._rate_text(rate),
            f"elapsed {format_duration(self._clock() - self._t0)}",
            f"ETA {format_duration(eta)}",
        ]
        for name, value in (metrics or {}).items():
            parts.append(f"{name}={float(value):.4g}")
        return " ".join(parts)
