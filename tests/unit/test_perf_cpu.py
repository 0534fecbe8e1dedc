"""ops/perf/cpu.py: CPU per process tree, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ops.perf.cpu import CpuMeter

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_tree_counts_its_children_and_a_process_alone_does_not() -> None:
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.6\n"
            "while time.process_time() < end: pass\ntime.sleep(30)",
        ]
    )
    try:
        meter = CpuMeter({"tree": os.getpid(), "alone": os.getpid()}, alone=frozenset({"alone"}))
        meter.start()
        _burn(0.2)
        deadline = time.monotonic() + 20
        while meter.stop()["tree"] - meter.spent["alone"] < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        spent = meter.stop()
        assert spent["alone"] >= 0.15
        assert spent["tree"] - spent["alone"] >= 0.5  # the child's burn, seen only through the tree
        per_order = meter.per_order_us(1000)
        assert per_order["alone"] == pytest.approx(spent["alone"] * 1000, abs=0.1)
        assert per_order["total"] == pytest.approx((spent["alone"] + spent["tree"]) * 1000, abs=0.2)
    finally:
        burner.kill()
        burner.wait()


def test_nothing_is_reported_for_no_orders() -> None:
    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    meter.stop()
    assert meter.per_order_us(0) == {}
