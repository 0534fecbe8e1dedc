"""The pipeline benchmark runs end to end with tiny phases and ends with its JSON line.

Only its shape is tested (keys, types, the ratios' arithmetic, the invariants); its figures are for
people to read, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_pipeline.py"
TINY = (
    "--seconds", "1", "--raw-seconds", "0.5", "--warmup", "0", "--accounts", "2", "--symbols", "1",
    "--window", "20", "--concurrency", "4",
)  # fmt: skip
RATES = ("raw_unary_calls_per_s", "raw_relay_orders_per_s", "unary_orders_per_s", "stream_orders_per_s")


def test_the_benchmark_prints_its_figures_and_ends_with_one_json_line(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    ran = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    figures = json.loads(ran.stdout.splitlines()[-1])
    required = {*RATES, "unary_ratio", "stream_ratio", "p99_ms", "invariants_ok"}
    assert required <= set(figures)
    for key in RATES:
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert isinstance(figures["p99_ms"], float) and figures["p99_ms"] > 0
    # The echo's CPU per call, each side measured apart (the server is the client's child).
    for key in ("raw_unary_server_cpu_us_per_call", "raw_unary_client_cpu_us_per_call"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["invariants_ok"] is True and figures["problems"] == []
    for ratio, numerator, denominator in (
        ("unary_ratio", "unary_orders_per_s", "raw_unary_calls_per_s"),
        ("stream_ratio", "stream_orders_per_s", "raw_relay_orders_per_s"),
    ):
        assert figures[ratio] == pytest.approx(figures[numerator] / figures[denominator], rel=1e-3, abs=1e-4)
    assert "ratio to raw unary" in ran.stdout and "ratio to raw relay" in ran.stdout
    written = json.loads(out.read_text())
    assert set(written["phases"]) == {"unary", "stream", "open_loop"}
    assert written["stream_orders_per_s"] == figures["stream_orders_per_s"]
