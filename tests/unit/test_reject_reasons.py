"""One list of refusal reasons: what the code can produce is in the contract, and the contract in the README.

The code names a reason only as a member of backbone.reasons.RejectReason (generated from
common.proto), or, in risk's Lua scripts, by the member's name; this test reads every module of the
shared package, the services and ops, and every Lua script, and lists the reasons they produce. Each
must be a member; each member but UNSPECIFIED must be produced somewhere (a reason nothing produces
is removed until a real control produces it); and the README's table lists each with what to do.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason, Stage

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("backbone", "gateway", "risk", "trading", "settlement", "ops")
# Lua scripts answer {0, 'REASON'} for a refusal (risk/lua/reserve.lua); risk turns the name into a member.
_LUA_REFUSAL = re.compile(r"\{\s*0\s*,\s*'([A-Z_]+)'")


def _python_modules() -> list[Path]:
    modules = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb2" in path.name or path == ROOT / "backbone" / "reasons.py":
                continue
            modules.append(path)
    return modules


def _named_reasons(path: Path) -> set[str]:
    """Names used as RejectReason.NAME in a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "RejectReason"
            and node.attr.isupper()
        ):
            names.add(node.attr)
    return names


def produced_reasons() -> dict[str, set[str]]:
    """Every reason name the code base names, with the files naming it."""
    found: dict[str, set[str]] = {}
    for path in _python_modules():
        for name in _named_reasons(path):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "risk").rglob("*.lua")):
        for name in _LUA_REFUSAL.findall(path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_scan_sees_the_code_base() -> None:
    found = produced_reasons()
    # Known producers in different stages, so a scan that reads nothing cannot pass.
    assert "gateway/validation.py" in found["INVALID_PRICE"]
    assert "risk/lua/reserve.lua" in found["INSUFFICIENT_BALANCE"]
    assert any(path.startswith("trading/") for path in found["ORDER_NOT_OPEN"])
    assert any(path.startswith("settlement/") for path in found["NEGATIVE_BALANCE"])


def test_every_reason_the_code_names_is_in_the_contract() -> None:
    members = {reason.value for reason in RejectReason}
    stray = {name: sorted(paths) for name, paths in produced_reasons().items() if name not in members}
    assert stray == {}


def test_every_reason_in_the_contract_is_produced_by_the_code() -> None:
    produced = set(produced_reasons())
    unused = [reason.value for reason in RejectReason if reason is not RejectReason.UNSPECIFIED]
    assert [name for name in unused if name not in produced] == []


def test_the_python_enum_mirrors_the_proto_enum() -> None:
    proto = {name.removeprefix("REJECT_REASON_"): number for name, number in common_pb2.RejectReason.items()}
    assert {reason.value: int(reason.number) for reason in RejectReason} == proto
    for reason in RejectReason:
        assert RejectReason.from_number(int(reason.number)) is reason
        assert RejectReason.from_name(reason.value) is reason
        assert reason.advice and reason.advice.endswith(".")
    assert RejectReason.from_number(12345) is RejectReason.UNSPECIFIED
    assert RejectReason.from_name("NOT A REASON") is RejectReason.UNSPECIFIED


def test_reasons_are_grouped_by_the_stage_that_refuses() -> None:
    assert RejectReason.INVALID_PRICE.stage is Stage.REQUEST
    assert RejectReason.INSUFFICIENT_BALANCE.stage is Stage.RISK
    assert RejectReason.ORDER_NOT_OPEN.stage is Stage.MATCHING
    assert RejectReason.NEGATIVE_BALANCE.stage is Stage.LEDGER
    assert RejectReason.SOURCE_CHANGED.stage is Stage.DELIVERY
    assert RejectReason.OUTCOME_UNKNOWN.stage is Stage.AVAILABILITY
    assert RejectReason.UNSPECIFIED.stage is Stage.NONE


def test_the_readme_lists_every_reason_with_what_to_do() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "<!-- reject-reasons:start" in readme and "<!-- reject-reasons:end -->" in readme
    table = readme.split("<!-- reject-reasons:start", 1)[1].split("<!-- reject-reasons:end -->", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| [a-z]+ \| (.+) \|$", table, re.M))
    expected = {
        reason.value: reason.advice for reason in RejectReason if reason is not RejectReason.UNSPECIFIED
    }
    assert rows == expected
