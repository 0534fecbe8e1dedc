"""The README's grpcurl walk-through and SDK snippet, run as written against a fresh system.

A newcomer pastes these first; a renamed field or a wrong figure in them is a bug. The walk-through
runs with three substitutions, each checked to apply: the gateway address, the API keys the reader
copies from the CreateAccount answers, and the execution stream, which runs for a few seconds instead
of until Ctrl-C. The SDK snippet then runs as Alice, with only the address and her key filled in.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.conftest import System
from tests.integration.gateway_calls import Gateway, balances, settles_to
from tests.integration.grpcurl_stand_in import run_pasted, substitute

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(heading: str, language: str) -> str:
    section = README.read_text().split(f"## {heading}", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"the {language} block under {heading!r}"
    return found.group(1)


def test_the_readme_walkthrough_places_a_trade_as_it_says(
    system_factory: Callable[..., System], tmp_path: Path
) -> None:
    system = system_factory()
    (tmp_path / ".backbone").mkdir()
    (tmp_path / ".backbone" / "admin-key").write_text(system.admin_key + "\n")

    block = readme_block("Walk-through with grpcurl", "sh")
    block = substitute(block, "GW=127.0.0.1:50051", f"GW={system.gateway}")
    block = substitute(block, "<alice's api_key>", "$(api_key_of alice)")
    block = substitute(block, "<bob's api_key>", "$(api_key_of bob)")
    answers = run_pasted(block, tmp_path)

    assert answers.methods() >= {"CreateAsset", "CreateInstrument", "CreateAccount", "Deposit", "SubmitOrder"}
    submitted = answers.of("SubmitOrder")
    assert [s["order"]["status"] for s in submitted] == ["ORDER_STATUS_NEW", "ORDER_STATUS_FILLED"]
    assert submitted[1]["order"]["averagePrice"] == "50000.00"

    # The comment's figures: Alice 74,950 USD and 0.5 BTC; Bob 1.5 BTC and 24,975 USD (the ledger may
    # trail the script's own GetBalances by a moment, so read them until they settle).
    alice_key, bob_key = answers.api_key("alice"), answers.api_key("bob")
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)

        def figures() -> tuple[tuple[str, str, str, str], ...]:
            return tuple(
                (asset, b.total, b.reserved, b.available)
                for api_key in (alice_key, bob_key)
                for asset, b in sorted(balances(gateway, api_key).items())
            )

        settles_to(
            figures,
            (
                ("BTC", "0.50000000", "0.00000000", "0.50000000"),
                ("USD", "74950.000000", "0.000000", "74950.000000"),
                ("BTC", "1.50000000", "0.00000000", "1.50000000"),
                ("USD", "24975.000000", "0.000000", "24975.000000"),
            ),
            what="the balances the walk-through promises",
        )

    # Then the README's SDK snippet, as Alice: her bid rests (nothing left to sell) and holds its reservation.
    snippet = readme_block("Python SDK", "python")
    snippet = substitute(snippet, '"127.0.0.1:50051"', repr(system.gateway))
    snippet = substitute(snippet, '"bbk_..."', repr(alice_key))
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "new 0.0000 None", lines
    assert lines[1:] == [
        "BTC total=0.50000000 reserved=0.00000000 available=0.50000000",
        "USD total=74950.000000 reserved=25100.100000 available=49849.900000",
    ]
