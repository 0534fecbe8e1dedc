"""The README's walk-through (grpcurl and buf curl) and SDK snippet, run as written against fresh systems.

A newcomer pastes these first; a renamed field or a wrong figure in them is a bug. The walk-through
runs with three substitutions, each checked to apply: the gateway address, the API keys the reader
copies from the CreateAccount answers, and the execution stream, which runs for a few seconds instead
of until Ctrl-C. grpcurl is played by `buf curl` (see grpcurl_stand_in); the buf curl lines run as
written with the installed buf. `backbone up` prints the walk-through's first block filled in, so its
banner followed by the README's second block must reach the same figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from backbone.runtime.config import Settings
from ops.cli import _banner
from tests.conftest import System
from tests.integration.gateway_calls import Gateway, balances, settles_to
from tests.integration.grpcurl_stand_in import Answers, banner_commands, run_pasted, substitute

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
WALKTHROUGH = "Walk-through with grpcurl"
STREAM_SECTION = "Order entry on a stream"
LISTS_SECTION = "Open orders and fills: rebuilding state after a reconnect"
# The two lines of the walk-through's first block that `backbone up` fills in for its system.
VARIABLES = 'ADMIN="x-admin-key: $(cat .backbone/admin-key)"\nGW=127.0.0.1:50051\n'
# (asset, total, reserved, available) of Alice's balances, then Bob's.
Figures = tuple[tuple[str, str, str, str], ...]


def readme_blocks(heading: str, language: str) -> list[str]:
    """The `language` code blocks of the README section `heading` (its subsections included)."""
    section = README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, re.S)
    assert blocks, f"the {language} blocks under {heading!r}"
    return blocks


def grpcurl_blocks() -> tuple[str, str]:
    """The walk-through's setup block and its orders block."""
    setup, orders, *_ = readme_blocks(WALKTHROUGH, "sh")
    assert setup.startswith(VARIABLES), "the setup block starts with ADMIN and GW"
    assert "SubmitOrder" not in setup and "SubmitOrder" in orders
    return setup, orders


def buf_curl_block() -> str:
    blocks = [b for b in readme_blocks(WALKTHROUGH, "sh") if "buf curl" in b]
    assert len(blocks) == 1, "one buf curl block"
    assert "grpcurl" not in blocks[0]
    return blocks[0]


def keys_filled_in(commands: str) -> str:
    """The commands with the API keys the reader copies from the CreateAccount answers."""
    commands = substitute(commands, "<alice's api_key>", "$(api_key_of alice)")
    return substitute(commands, "<bob's api_key>", "$(api_key_of bob)")


def paste(system: System, commands: str, folder: Path) -> Answers:
    """Run README commands from scratch as the reader would, in a folder holding `.backbone/admin-key`."""
    (folder / ".backbone").mkdir(parents=True)
    (folder / ".backbone" / "admin-key").write_text(system.admin_key + "\n")
    commands = substitute(commands, "GW=127.0.0.1:50051", f"GW={system.gateway}")
    return run_pasted(keys_filled_in(commands), folder)


def assert_the_walkthrough_figures(system: System, answers: Answers) -> tuple[str, str]:
    """The trade and the balances the walk-through promises; returns (alice's key, bob's key)."""
    assert answers.methods() >= {"CreateAsset", "CreateInstrument", "CreateAccount", "Deposit", "SubmitOrder"}
    assert [d["created"] for d in answers.of("Deposit")] == [True, True]
    submitted = answers.of("SubmitOrder")
    assert [s["order"]["status"] for s in submitted] == ["ORDER_STATUS_NEW", "ORDER_STATUS_FILLED"]
    assert submitted[1]["order"]["averagePrice"] == "50000.00"
    fill = submitted[1]["reports"][-1]
    assert (fill["lastFee"], fill["feeAsset"], fill["liquiditySide"]) == (
        "50.000000",
        "USD",
        "LIQUIDITY_SIDE_TAKER",
    )

    # The comment's figures: Alice 74,950 USD and 0.5 BTC; Bob 1.5 BTC and 24,975 USD (the ledger and
    # risk may trail the script's own GetBalances by a moment, so read them until they settle).
    alice_key, bob_key = answers.api_key("alice"), answers.api_key("bob")
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)

        def figures() -> Figures:
            return tuple(
                (asset, b.total, b.reserved, b.available)
                for api_key in (alice_key, bob_key)
                for asset, b in sorted(balances(gateway, api_key).items())
            )

        promised: Figures = (
            ("BTC", "0.50000000", "0.00000000", "0.50000000"),
            ("USD", "74950.000000", "0.000000", "74950.000000"),
            ("BTC", "1.50000000", "0.00000000", "1.50000000"),
            ("USD", "24975.000000", "0.000000", "24975.000000"),
        )
        settles_to(figures, promised, what="the balances the walk-through promises")
    return alice_key, bob_key


def test_the_readme_walkthrough_places_a_trade_as_it_says(
    system_factory: Callable[..., System], tmp_path: Path
) -> None:
    system = system_factory()
    setup, orders = grpcurl_blocks()
    answers = paste(system, setup + "\n" + orders, tmp_path)
    alice_key, bob_key = assert_the_walkthrough_figures(system, answers)

    # Then the README's SDK snippet, as Alice: her bid rests (nothing left to sell) and holds its reservation.
    snippet = readme_blocks("Python SDK", "python")[0]
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
    # ...which is what the money section says it reads.
    assert "`total=74950.000000 reserved=25100.100000 available=49849.900000`" in README.read_text()

    # Then the stream section: grpcurl as Bob (one order rests, one is refused, each on its own)...
    (stream_commands,) = readme_blocks(STREAM_SECTION, "sh")
    (tmp_path / "stream").mkdir()
    streamed = run_pasted(
        f'GW={system.gateway}\nBOB="x-api-key: {bob_key}"\n' + stream_commands, tmp_path / "stream"
    )
    (responses,) = streamed.stream_of("StreamOrders")
    assert responses[0] == {"maxInFlight": 4096}
    results = sorted(
        (r for m in responses[1:] for r in m.get("results", [])), key=lambda r: r.get("index", 0)
    )
    assert [(r["tag"], r.get("code", 0), r.get("reason"), r.get("field")) for r in results] == [
        ("ask", 0, None, None),
        ("bad", 3, "REJECT_REASON_INVALID_PRICE", "price"),
    ]
    assert results[0]["order"]["status"] == "ORDER_STATUS_NEW"
    # ...and the SDK as Alice: her ask rests, her off-tick bid is refused, the ask is cancelled.
    (stream_snippet,) = readme_blocks(STREAM_SECTION, "python")
    stream_snippet = substitute(stream_snippet, '"127.0.0.1:50051"', repr(system.gateway))
    stream_snippet = substitute(stream_snippet, '"bbk_..."', repr(alice_key))
    ran = subprocess.run([sys.executable, "-c", stream_snippet], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    first, *events = ran.stdout.splitlines()
    assert (
        first
        == "new INVALID_ARGUMENT INVALID_PRICE: price: 50100.001 is not a multiple of the tick size 0.01"
    )
    assert sorted(events) == ["('ask', True)", "('bid', False)", "('pull', True)"]

    # Then the lists, as Alice: her resting bid (the SDK snippet's) and her one fill (the walk-through's).
    (lists_commands,) = readme_blocks(LISTS_SECTION, "sh")
    (tmp_path / "lists").mkdir()
    listed = run_pasted(
        f'GW={system.gateway}\nALICE="x-api-key: {alice_key}"\n' + lists_commands, tmp_path / "lists"
    )
    (open_orders,) = listed.of("ListOrders")
    assert [(o["side"], o["price"], o["leavesQuantity"]) for o in open_orders["orders"]] == [
        ("SIDE_BUY", "50100.00", "0.5000")
    ]
    assert "nextPageToken" not in open_orders
    (fills,) = listed.of("ListFills")
    assert [
        (f["tradeId"], f["side"], f["price"], f["quantity"], f["fee"], f["feeAsset"], f["liquiditySide"])
        for f in fills["fills"]
    ] == [("1", "SIDE_BUY", "50000.00", "0.5000", "50.000000", "USD", "LIQUIDITY_SIDE_TAKER")]
    assert int(fills["tradingSequence"]) >= int(fills["fills"][0]["tradingSequence"])
    (lists_snippet,) = readme_blocks(LISTS_SECTION, "python")
    lists_snippet = substitute(lists_snippet, '"127.0.0.1:50051"', repr(system.gateway))
    lists_snippet = substitute(lists_snippet, '"bbk_..."', repr(alice_key))
    ran = subprocess.run([sys.executable, "-c", lists_snippet], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["buy 0.5000 50100.00", "1 buy 0.5000 50000.00 50.000000 taker"]


def test_the_readme_walkthrough_with_buf_curl_reaches_the_same_balances(
    system_factory: Callable[..., System], tmp_path: Path
) -> None:
    system = system_factory()
    answers = paste(system, buf_curl_block(), tmp_path / "buf")
    assert_the_walkthrough_figures(system, answers)

    # Line for line the grpcurl walk-through: the same calls in the same order.
    setup, orders = grpcurl_blocks()
    calls = re.findall(r"backbone\.gateway\.v1\.\w+/(\w+)", setup + orders)
    assert calls == re.findall(r"backbone\.gateway\.v1\.\w+/(\w+)", buf_curl_block())
    assert sorted(p.name.split("-", 1)[1] for p in answers.folder.iterdir()) == sorted(
        f"{call}.json" for call in calls
    )


def test_the_banner_then_the_readme_reach_the_readme_balances(
    system_factory: Callable[..., System], tmp_path: Path
) -> None:
    system = system_factory()
    settings = Settings.from_env({"BACKBONE_GATEWAY_ADDRESS": system.gateway})
    banner = _banner(settings, system.admin_key, system.database_url, system.redis_url, None)
    printed = banner_commands(banner)
    setup, orders = grpcurl_blocks()
    # The banner is the walk-through's first block with its two variables filled in...
    assert printed.splitlines()[:2] == [f"ADMIN='x-admin-key: {system.admin_key}'", f"GW={system.gateway}"]
    assert printed.split("\n", 2)[2] == setup.removeprefix(VARIABLES)
    assert "go on with the README walk-through's second block" in banner
    # ...so pasting it, then the README's second block in the same shell, is the walk-through.
    # (No .backbone folder here: the banner's admin key is filled in.)
    answers = run_pasted(printed + "\n" + keys_filled_in(orders), tmp_path)
    assert_the_walkthrough_figures(system, answers)
