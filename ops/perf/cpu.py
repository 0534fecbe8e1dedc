"""CPU time of a system's processes, read from /proc: what each part of the pipeline costs per order.

Throughput on a shared, noisy machine drifts from run to run; the CPU a process spent on a known
number of orders drifts much less, so it is the figure to compare before and after a change.
A part is a process and every process below it (PostgreSQL's backends are children of its
postmaster), or a process alone (a client that started the system it measures). Where /proc is
missing (not Linux), every reading is empty and nothing is reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the rest follow it.
    return text[text.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree_seconds(pid: int, children: Mapping[int, list[int]]) -> float:
    """User plus system CPU seconds of a process and its live descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        fields = _stat_fields(current)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        stack.extend(children.get(current, ()))
    return total / _TICKS_PER_SECOND


def cpu_seconds(parts: Mapping[str, int], alone: frozenset[str] = frozenset()) -> dict[str, float]:
    """CPU seconds spent so far by each named part (a pid and its descendants; those named in
    `alone` without them)."""
    children = _children()
    return {name: _tree_seconds(pid, {} if name in alone else children) for name, pid in parts.items()}


class CpuMeter:
    """CPU spent by each part between `start()` and `stop()`."""

    def __init__(self, parts: Mapping[str, int], alone: frozenset[str] = frozenset()) -> None:
        self.parts = dict(parts)
        self.alone = alone
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self._before = cpu_seconds(self.parts, self.alone)

    def stop(self) -> dict[str, float]:
        after = cpu_seconds(self.parts, self.alone)
        self.spent = {name: round(after[name] - self._before.get(name, 0.0), 3) for name in after}
        return self.spent

    def per_order_us(self, orders: int) -> dict[str, float]:
        """Microseconds of CPU per order for each part, and their total."""
        if orders <= 0 or not self.spent:
            return {}
        figures = {name: round(seconds * 1e6 / orders, 1) for name, seconds in self.spent.items()}
        figures["total"] = round(sum(self.spent.values()) * 1e6 / orders, 1)
        return figures
