"""`backbone up`: embedded storage and all four services from one command, stopped cleanly, data kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from backbone.runtime.embedded import free_port
from tests.integration.gateway_calls import Gateway, balances, funded_account, wait_for
from tests.integration.grpcurl_stand_in import banner_commands, run_pasted

pytestmark = pytest.mark.integration


def start_up(data_dir: Path, ports: dict[str, int], **settings: str) -> subprocess.Popen[str]:
    """`backbone up` on these ports and data folder, with any other BACKBONE_ `settings`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    environment.update(
        {f"BACKBONE_{name.upper()}_ADDRESS": f"127.0.0.1:{port}" for name, port in ports.items()}
        | {"BACKBONE_DATA_DIR": str(data_dir)}
        | settings
    )
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "up"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_banner(process: subprocess.Popen[str], timeout_seconds: float = 90.0) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_seconds
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(seen)
    raise AssertionError("backbone up did not print its banner:\n" + "".join(seen))


def stop_up(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 0, output
    return output


def test_up_runs_everything_and_keeps_the_ledger(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("gateway", "risk", "trading", "settlement")}
    process = start_up(data_dir, ports)
    output = ""
    try:
        banner = wait_banner(process)
        admin_key = (data_dir / "admin-key").read_text().strip()
        assert admin_key in banner
        assert f"127.0.0.1:{ports['gateway']}" in banner
        # The banner's commands work as pasted, nothing edited in: assets, an instrument, two funded
        # accounts (the README walk-through's first block; test_readme_walkthrough goes on from there).
        setup = run_pasted(banner_commands(banner), tmp_path / "setup")
        assert [a["code"] for a in setup.of("CreateAsset")] == ["USD", "BTC"]
        assert [a["instrument"]["symbol"] for a in setup.of("CreateInstrument")] == ["BTC-USD"]
        assert [a["accountId"] for a in setup.of("CreateAccount")] == ["alice", "bob"]
        assert [(d["created"], d["balance"]) for d in setup.of("Deposit")] == [
            (True, "100000.000000"),
            (True, "2.00000000"),
        ]
        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as channel:
            gateway = Gateway(channel, admin_key)
            _, api_key = funded_account(gateway, {"USD": "1234.56"})
            assert balances(gateway, api_key)["USD"].total == "1234.560000"
    finally:
        if process.poll() is None:
            output = stop_up(process)
    assert "stopped." in output
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "embedded servers must be stopped"

    process = start_up(data_dir, ports)
    try:
        wait_banner(process)
        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as channel:
            gateway = Gateway(channel, admin_key)
            wait_for(
                lambda: balances(gateway, api_key)["USD"].total == "1234.560000",
                what="the ledger after restart",
            )
    finally:
        if process.poll() is None:
            stop_up(process)
