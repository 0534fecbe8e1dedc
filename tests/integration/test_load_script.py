"""The load script runs end to end on its own system: figures out, invariants held afterwards.

Only that it works and reports is tested here; its figures are for people to read, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "load_orders.py"
SHORT_RUN = ("--seconds", "1", "--rate", "50", "--accounts", "4", "--concurrency", "8")


def test_the_load_script_reports_figures_and_checks_the_invariants() -> None:
    ran = subprocess.run(
        [sys.executable, str(SCRIPT), *SHORT_RUN],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    figures = json.loads(ran.stdout.splitlines()[-1])
    assert figures["invariants"] == "ok"
    assert figures["orders_accepted"] > 0 and figures["open_loop_errors"] == 0
    assert set(figures["latency_ms"]) == {"p50", "p99", "p99_9"}
    assert figures["ratio_orders_to_unary_baseline"] > 0
