"""What a run measures: HDR histograms of latency, outcomes by status and reason, a per-second timeline.

Latencies are recorded in microseconds and reported in milliseconds. A :class:`Recorder` holds one
phase (a run, or one step of a ramp); the :class:`Timeline` spans the whole run in windows of one
second, for the plot and the progress line.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Any

import grpc
from hdrh.histogram import HdrHistogram

from backbone.common.v1 import common_pb2

MAX_LATENCY_US = 600_000_000  # ten minutes: anything slower is recorded as this
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# Refusals the flow itself makes likely and that say nothing about the system: a cancel or a
# replace that raced the order's last fill.
EXPECTED_REFUSALS = frozenset({"FAILED_PRECONDITION/ORDER_NOT_OPEN"})
OK = "OK"


def outcome_name(code: int, reason: int) -> str:
    """``OK``, or ``STATUS/REASON`` such as ``FAILED_PRECONDITION/INSUFFICIENT_BALANCE``."""
    if code == 0:
        return OK
    status = _CODE_NAMES.get(code, f"STATUS_{code}")
    try:
        name = common_pb2.RejectReason.Name(reason).removeprefix("REJECT_REASON_")
    except ValueError:
        name = f"REASON_{reason}"
    return f"{status}/{name}"


def _micros(seconds: float) -> int:
    return min(MAX_LATENCY_US, max(1, int(seconds * 1e6)))


class Latency:
    """One HDR histogram of latencies (µs, 3 significant digits).

    A value is appended to a plain array when it happens (a fraction of a microsecond) and goes
    into the histogram when a figure is asked for: the client spends its CPU on the histogram
    after the traffic, not during it.
    """

    def __init__(self) -> None:
        self._histogram = HdrHistogram(1, MAX_LATENCY_US, 3)
        self._pending = array("q")
        self.record_micros = self._pending.append  # an int of µs, already clamped

    def record(self, seconds: float) -> None:
        self._pending.append(_micros(seconds))

    @property
    def histogram(self) -> HdrHistogram:
        pending = self._pending
        if pending:
            record = self._histogram.record_value
            for value in pending:
                record(value)
            del pending[:]
        return self._histogram

    def add(self, other: Latency) -> None:
        self.histogram.add(other.histogram)

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        return float(self.histogram.get_value_at_percentile(percentile)) / 1000.0

    def summary(self) -> dict[str, Any]:
        """count, p50, p90, p99, p99_9, max and mean in ms (None when nothing was recorded)."""
        histogram = self.histogram
        if self.count == 0:
            return {"count": 0, **{name: None for name, _ in PERCENTILES}, "max": None, "mean": None}
        figures: dict[str, Any] = {"count": self.count}
        for name, percentile in PERCENTILES:
            figures[name] = round(histogram.get_value_at_percentile(percentile) / 1000.0, 3)
        figures["max"] = round(histogram.get_max_value() / 1000.0, 3)
        figures["mean"] = round(histogram.get_mean_value() / 1000.0, 3)
        return figures


class Window:
    """One second of the timeline."""

    __slots__ = ("acked", "errors", "fills", "latency", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0  # answered OK
        self.errors = 0  # answered otherwise (expected refusals left out)
        self.fills = 0
        self.latency = array("q")  # submit -> ack of the answers in it (µs)

    def percentiles(self) -> dict[str, float]:
        """p50 ... p99.9 and max of its latencies, in ms (empty when it has none)."""
        values = sorted(self.latency)
        if not values:
            return {}
        last = len(values) - 1
        figures = {
            name: round(values[min(last, math.ceil(percentile / 100 * len(values)) - 1)] / 1000.0, 3)
            for name, percentile in PERCENTILES
        }
        figures["max"] = round(values[-1] / 1000.0, 3)
        return figures


class Timeline:
    """The run second by second (by the time things happened, not the time they were due)."""

    def __init__(self, start: float, width_seconds: float = 1.0) -> None:
        self.start = start
        self.width = width_seconds
        self.windows: list[Window] = []

    def at(self, now: float) -> Window:
        index = int((now - self.start) / self.width)
        if index < 0:
            index = 0
        windows = self.windows
        while len(windows) <= index:
            windows.append(Window())
        return windows[index]

    def rows(self, end: float | None = None) -> list[dict[str, Any]]:
        """One row per window: t (s from the start), counts per second, ack latency percentiles (ms).

        The last window is divided by the part of it before `end` (when the run ended), so its
        rates are not understated.
        """
        rows = []
        last = len(self.windows) - 1
        for index, window in enumerate(self.windows):
            width = self.width
            if index == last and end is not None:
                width = min(self.width, max(end - (self.start + index * self.width), 0.05 * self.width))
            row: dict[str, Any] = {
                "t": round(index * self.width, 3),
                "width_s": round(width, 3),
                "sent_per_s": round(window.sent / width, 1),
                "acked_per_s": round(window.acked / width, 1),
                "fills_per_s": round(window.fills / width, 1),
                "errors_per_s": round(window.errors / width, 1),
            }
            row.update(window.percentiles())
            rows.append(row)
        return rows


class Recorder:
    """The figures of one phase: commands sent and answered, latencies, outcomes."""

    def __init__(self, name: str, target_rate: float | None = None) -> None:
        self.name = name
        self.target_rate = target_rate
        self.ack = Latency()  # submit -> its answer
        self.fill = Latency()  # submit of the order that traded -> each side learning of the fill
        self.cancel = Latency()  # cancel -> its answer
        self.replace = Latency()  # replace -> its answer
        self.outcomes: Counter[str] = Counter()
        self.sent = 0
        self.submits = 0
        self.replaces = 0
        self.answered = 0
        self.errors = 0
        self.fills = 0
        self.started: float | None = None  # when its first command was due
        self.ended: float | None = None  # when its last command was due
        self.last_answer: float | None = None

    def sent_one(self, command_time: float, submit: bool, replace: bool = False) -> None:
        self.sent += 1
        if submit:
            self.submits += 1
        elif replace:
            self.replaces += 1
        if self.started is None:
            self.started = command_time
        self.ended = command_time

    def answered_one(self, now: float, outcome: str) -> bool:
        """Count an answer; True when it is an error (not OK, not an expected refusal)."""
        self.answered += 1
        self.outcomes[outcome] += 1
        self.last_answer = now
        if outcome == OK or outcome in EXPECTED_REFUSALS:
            return False
        self.errors += 1
        return True

    @property
    def unanswered(self) -> int:
        return self.sent - self.answered

    def error_rate(self) -> float:
        """Errors and unanswered commands over commands sent."""
        return (self.errors + self.unanswered) / self.sent if self.sent else 0.0

    def summary(self) -> dict[str, Any]:
        span = None
        if self.started is not None and self.last_answer is not None:
            span = max(self.last_answer - self.started, 1e-9)
        return {
            "name": self.name,
            "target_rate": self.target_rate,
            "sent": self.sent,
            "submits": self.submits,
            "cancels": self.sent - self.submits - self.replaces,
            "replaces": self.replaces,
            "answered": self.answered,
            "unanswered": self.unanswered,
            "errors": self.errors,
            "error_rate": round(self.error_rate(), 6),
            "fills": self.fills,
            "answered_per_s": round(self.answered / span, 1) if span else None,
            "latency_ms": {
                "submit_to_ack": self.ack.summary(),
                "submit_to_fill": self.fill.summary(),
                "cancel_to_ack": self.cancel.summary(),
                "replace_to_ack": self.replace.summary(),
            },
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def merged(name: str, recorders: list[Recorder]) -> Recorder:
    """One recorder adding up several (a ramp's steps)."""
    total = Recorder(name)
    for recorder in recorders:
        total.ack.add(recorder.ack)
        total.fill.add(recorder.fill)
        total.cancel.add(recorder.cancel)
        total.replace.add(recorder.replace)
        total.outcomes.update(recorder.outcomes)
        total.sent += recorder.sent
        total.submits += recorder.submits
        total.replaces += recorder.replaces
        total.answered += recorder.answered
        total.errors += recorder.errors
        total.fills += recorder.fills
        for attribute, pick in (("started", min), ("ended", max), ("last_answer", max)):
            values = [v for v in (getattr(total, attribute), getattr(recorder, attribute)) if v is not None]
            setattr(total, attribute, pick(values) if values else None)
    return total
