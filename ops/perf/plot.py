"""The PNG of a run: latency percentiles and throughput over time, and a ramp's latency against its rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

_PERCENTILES = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max"))


def _plain(axis: Axes, x: bool = False) -> None:
    """Plain numbers on a log axis (10, 20, 50 rather than 10^1, 2x10^1); minor ticks labelled at
    2, 3 and 5 times a power of ten only."""

    def minor(value: float, _: object) -> str:
        return f"{value:,.10g}" if f"{value:.0e}"[0] in "235" else ""

    target = axis.xaxis if x else axis.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}"))
    target.set_minor_formatter(FuncFormatter(minor))


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def plot(result: dict[str, Any], path: Path) -> None:
    """Draw `result` (what `backbone load` returns) into `path`."""
    rows = result.get("timeline") or []
    steps = (result.get("ramp") or {}).get("steps") or []
    panels = 3 if steps else 2
    figure, axes = plt.subplots(panels, 1, figsize=(10, 3.6 * panels), constrained_layout=True)
    title = (
        f"backbone load: {result['path']} path, {result['mode']}, {result['accounts']} accounts, "
        f"{len(result['symbols'])} symbols, seed {result['seed']}"
    )
    figure.suptitle(title)

    latency = axes[0]
    times = [row["t"] for row in rows]
    for key, label in _PERCENTILES:
        points = [(row["t"], row[key]) for row in rows if row.get(key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            latency.plot(xs, ys, label=label, linewidth=1.2, linestyle=":" if key == "max" else "-")
    latency.set_yscale("log")
    _plain(latency)
    latency.set_ylabel("submit -> ack (ms)")
    latency.set_xlabel("time (s)")
    latency.set_title("latency percentiles per second (from each order's due time)")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(loc="upper left", fontsize="small")

    throughput = axes[1]
    for key, label in (
        ("sent_per_s", "sent"),
        ("acked_per_s", "answered OK"),
        ("fills_per_s", "trades"),
        ("errors_per_s", "errors"),
    ):
        throughput.plot(times, [row[key] for row in rows], label=label, linewidth=1.2)
    throughput.set_ylabel("per second")
    throughput.set_xlabel("time (s)")
    throughput.set_title("throughput per second")
    throughput.grid(True, alpha=0.3)
    throughput.legend(loc="upper left", fontsize="small")

    if steps:
        curve = axes[2]
        rates = [step["achieved_per_s"] or step["rate"] for step in steps]
        for key, label in _PERCENTILES[:4]:
            curve.plot(rates, [_number(step[key]) for step in steps], marker="o", label=label)
        ramp = result["ramp"]
        curve.axhline(ramp["p99_limit_ms"], color="grey", linestyle="--", linewidth=1, label="p99 limit")
        knee = ramp.get("knee_rate")
        if knee:
            at = next((r for r, step in zip(rates, steps, strict=True) if step["rate"] == knee), knee)
            curve.axvline(at, color="red", linestyle=":", linewidth=1, label=f"knee: {knee:,.0f}/s offered")
        curve.set_xscale("log")
        curve.set_yscale("log")
        _plain(curve)
        _plain(curve, x=True)
        curve.set_xlabel("achieved rate (commands/s)")
        curve.set_ylabel("submit -> ack (ms)")
        curve.set_title("latency against rate (one point per ramp step)")
        curve.grid(True, which="both", alpha=0.3)
        curve.legend(loc="upper left", fontsize="small")

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
