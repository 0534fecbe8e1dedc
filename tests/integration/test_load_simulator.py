"""`backbone load` against a running system: the seeded flow repeats exactly, and the ramp finds its knee.

Each run has its own prefix (its own accounts and instruments), so several share one system; the
digest leaves the prefix, ids and keys out. Figures are for people: no timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import System

pytestmark = pytest.mark.integration

DETERMINISTIC = ("--deterministic", "--count", "250", "--accounts", "4", "--symbols", "2")


def load(system: System, *arguments: str) -> tuple[int, dict[str, Any], str]:
    """Run `backbone load` on `system`: exit code, the JSON of its last line, everything it printed."""
    ran = subprocess.run(
        [
            sys.executable, "-m", "ops", "load",
            "--target", system.gateway, "--admin-key", system.admin_key,
            "--database-url", system.database_url, "--redis-url", system.redis_url,
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    output = ran.stdout + ran.stderr
    assert ran.stdout.strip(), output
    return ran.returncode, json.loads(ran.stdout.splitlines()[-1]), output


def test_the_same_seed_gives_the_same_trades_and_ledger_digest_on_either_path(system: System) -> None:
    runs = {
        name: load(system, *DETERMINISTIC, "--seed", seed, "--prefix", name, "--path", path)
        for name, seed, path in (
            ("DETA", "11", "stream"),
            ("DETB", "11", "stream"),
            ("DETC", "12", "stream"),
            ("DETD", "11", "unary"),
        )
    }
    for name, (code, result, output) in runs.items():
        assert code == 0, f"{name}:\n{output}"
        assert result["invariants"] == "ok" and result["problems"] == []
        assert result["sent"] == result["answered"] == 250
        assert result["trades"] > 0 and result["settled"]
        assert f"ledger digest: {result['digest']}" in output
    digests = {name: result["digest"] for name, (_, result, _) in runs.items()}
    assert digests["DETA"] == digests["DETB"] == digests["DETD"]
    assert digests["DETC"] != digests["DETA"]
    assert runs["DETA"][1]["trades"] == runs["DETB"][1]["trades"] == runs["DETD"][1]["trades"]


def test_the_ramp_reports_the_highest_sustainable_rate_and_stops(system: System, tmp_path: Path) -> None:
    ramp = [
        *("--ramp", "--ramp-start", "40", "--ramp-factor", "2", "--ramp-max", "80", "--step-seconds", "1"),
        *("--accounts", "3", "--symbols", "2"),
    ]
    plot, out = tmp_path / "ramp.png", tmp_path / "ramp.json"
    # A limit no step can miss: every step is sustainable, the knee is the last rate tried.
    code, result, output = load(
        system, *ramp, "--prefix", "RAMPA", "--p99-limit-ms", "600000", "--plot", str(plot), "--out", str(out)
    )
    assert code == 0, output
    steps = result["ramp"]["steps"]
    assert [step["rate"] for step in steps] == [40.0, 80.0]
    assert result["ramp"]["knee_rate"] == 80.0
    assert "reached --ramp-max" in result["ramp"]["stopped_by"]
    assert "knee: 80 orders/s sustainable" in output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(out.read_text())
    assert written["timeline"] and {"t", "sent_per_s", "acked_per_s"} <= set(written["timeline"][0])
    # A limit every step misses: it stops after the first step and says why.
    code, result, output = load(system, *ramp, "--prefix", "RAMPB", "--p99-limit-ms", "0.001")
    assert code == 0, output
    assert len(result["ramp"]["steps"]) == 1 and result["ramp"]["knee_rate"] is None
    assert "p99" in result["ramp"]["stopped_by"] and "knee: no rate was sustainable" in output


def test_on_its_own_system_a_run_says_what_each_process_spent_per_command(system: System) -> None:
    """Given the system's processes (as a run on its own system is), the result has the CPU each
    of them and the load generator spent per command, and the printed summary says it."""
    from ops.perf import simulator
    from ops.perf.options import add_load_arguments

    parser = argparse.ArgumentParser()
    add_load_arguments(parser)
    options = parser.parse_args(["--rate", "100", "--duration", "1", "--accounts", "2", "--symbols", "1"])
    parts = {name: process.pid for name, process in system.services.processes.items()}
    url = system.database_url
    result = simulator.run_loop(
        simulator.simulate(options, system.gateway, system.admin_key, url, "CPUM", 120.0, parts)
    )
    spent = result["cpu_us_per_order"]
    assert set(spent) == {*parts, "client", "total"}
    assert result["sent"] > 0 and spent["total"] > 0 and spent["gateway"] > 0
    assert spent["total"] == pytest.approx(sum(us for name, us in spent.items() if name != "total"), abs=1)
    assert any(line.startswith("CPU per command, us") for line in simulator.describe(result))
