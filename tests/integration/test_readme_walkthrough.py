"""The README's grpcurl walk-through and SDK snippet, run as written against a fresh system.

A newcomer pastes these commands first; a renamed field or a wrong figure in them is a bug. grpcurl is
not a Python package, so `grpcurl` is a shell function translating its arguments to `buf curl` (the
dev extra installs buf). The script is the README's block with three substitutions, each checked to
apply: the gateway address, the account API keys the reader copies from the CreateAccount answers, and
the execution stream, which runs for a few seconds instead of until Ctrl-C. The README's SDK snippet
then runs as Alice, with only the address and her key filled in.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.conftest import System
from tests.integration.gateway_calls import Gateway, balances, settles_to

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"

# grpcurl's argument shape: -plaintext, then -H/-d pairs, then ADDRESS SERVICE/METHOD. Every answer is
# saved as <n>-<Method>.json next to the script for the test to read.
GRPCURL_AS_BUF_CURL = r"""
set -euo pipefail
calls=0
grpcurl() {
  local args=() address method
  while [ "$#" -gt 2 ]; do
    case "$1" in
      -plaintext) shift ;;
      -H|-d) args+=("$1" "$2"); shift 2 ;;
      *) echo "grpcurl flag the stand-in does not know: $1" >&2; return 2 ;;
    esac
  done
  address=$1 method=$2 calls=$((calls + 1))
  local out="$OUT/$calls-${method##*/}.json"
  if [ "${method##*/}" = StreamExecutions ]; then
    # The README leaves this running; here it must stay open, not be refused.
    local code=0
    timeout 3 "$BUF" curl --protocol grpc --http2-prior-knowledge "${args[@]}" "http://$address/$method" \
      > "$out" || code=$?
    [ "$code" -eq 124 ] || { echo "StreamExecutions ended with $code" >&2; return 1; }
  else
    "$BUF" curl --protocol grpc --http2-prior-knowledge "${args[@]}" "http://$address/$method" > "$out"
  fi
  cat "$out"
}
api_key_of() {  # what a reader copies from the CreateAccount answer for that account
  local answer
  answer=$(grep -l "\"accountId\": \"$1\"" "$OUT"/*-CreateAccount.json)
  sed -n 's/.*"apiKey": "\(.*\)".*/\1/p' "$answer"
}
"""


def readme_block(heading: str, language: str) -> str:
    section = README.read_text().split(f"## {heading}", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"the {language} block under {heading!r}"
    return found.group(1)


def substitute(block: str, old: str, new: str) -> str:
    assert old in block, f"the README walk-through no longer contains {old!r}"
    return block.replace(old, new)


def test_the_readme_walkthrough_places_a_trade_as_it_says(
    system_factory: Callable[..., System], tmp_path: Path
) -> None:
    system = system_factory()
    (tmp_path / ".backbone").mkdir()
    (tmp_path / ".backbone" / "admin-key").write_text(system.admin_key + "\n")
    out = tmp_path / "answers"
    out.mkdir()

    block = readme_block("Walk-through with grpcurl", "sh")
    block = substitute(block, "GW=127.0.0.1:50051", f"GW={system.gateway}")
    block = substitute(block, "<alice's api_key>", "$(api_key_of alice)")
    block = substitute(block, "<bob's api_key>", "$(api_key_of bob)")
    script = tmp_path / "walkthrough.sh"
    script.write_text(GRPCURL_AS_BUF_CURL + block)
    buf = Path(sys.executable).parent / "buf"
    assert buf.exists(), "buf is missing: the dev extra installs it (buf-bin)"

    result = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "OUT": str(out),
            "BUF": str(buf),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"

    answers = {path.name.split("-", 1)[1].removesuffix(".json"): path for path in sorted(out.iterdir())}
    assert set(answers) >= {"CreateAsset", "CreateInstrument", "CreateAccount", "Deposit", "SubmitOrder"}
    submitted = [json.loads(p.read_text()) for p in sorted(out.glob("*-SubmitOrder.json"))]
    assert [s["order"]["status"] for s in submitted] == ["ORDER_STATUS_NEW", "ORDER_STATUS_FILLED"]
    assert submitted[1]["order"]["averagePrice"] == "50000.00"

    # The comment's figures: Alice 74,950 USD and 0.5 BTC; Bob 1.5 BTC and 24,975 USD (the ledger may
    # trail the script's own GetBalances by a moment, so read them until they settle).
    alice_key = api_key_from_answers(out, "alice")
    bob_key = api_key_from_answers(out, "bob")
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


def api_key_from_answers(out: Path, account_id: str) -> str:
    for path in sorted(out.glob("*-CreateAccount.json")):
        answer = json.loads(path.read_text())
        if answer["accountId"] == account_id:
            return str(answer["apiKey"])
    raise AssertionError(f"no CreateAccount answer for {account_id}")
