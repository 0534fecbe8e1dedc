"""backbone.ids: one rule per id and per limit, matched against the whole string."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backbone import ids
from backbone.ids import RULES, IdRule
from backbone.reasons import RejectReason
from tests.id_cases import CASES, bad_values, good_values


def _rule_id(rule: IdRule) -> str:
    return rule.kind.replace(" ", "_")


def test_every_rule_has_cases() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_good_values_are_valid(rule: IdRule) -> None:
    for value in good_values(rule):
        assert rule.problem(value) is None, value
        assert rule.is_valid(value)


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_wrong_and_hostile_values_are_refused_with_a_short_reason(rule: IdRule) -> None:
    for value in bad_values(rule):
        problem = rule.problem(value)
        assert problem, f"{rule.kind} accepted {value!r}"
        assert not rule.is_valid(value)
        assert len(problem) < 400, problem  # a huge value is never echoed back whole


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
def test_a_trailing_newline_is_refused_and_shown(rule: IdRule) -> None:
    good = good_values(rule)[0]
    problem = rule.problem(good + "\n")
    assert problem is not None
    assert "\\n" in problem and "whitespace" in problem


def test_problems_say_what_is_wrong() -> None:
    assert ids.account_id_problem("") == "is required"
    assert "control character" in (ids.deposit_id_problem("d\x001") or "")
    assert "space" in (ids.client_order_id_problem("my order") or "")
    assert "not ASCII" in (ids.symbol_problem("\u00c4-USD") or "")
    assert "at most 32" in (ids.symbol_problem("A" * 33) or "")
    assert "for example BTC-USD" in (ids.symbol_problem("btc-usd") or "")
    assert ids.order_id_problem(42) == "must be text, not int"


def test_each_kind_has_its_reason() -> None:
    assert {rule.kind: rule.reason for rule in RULES} == {
        "account id": RejectReason.INVALID_ACCOUNT_ID,
        "source name": RejectReason.INVALID_SOURCE,
        "asset code": RejectReason.INVALID_ASSET_CODE,
        "symbol": RejectReason.INVALID_SYMBOL,
        "order id": RejectReason.INVALID_ORDER_ID,
        "client order id": RejectReason.INVALID_CLIENT_ORDER_ID,
        "deposit id": RejectReason.INVALID_DEPOSIT_ID,
        "command tag": RejectReason.INVALID_TAG,
    }


def test_the_functions_answer_with_the_rules() -> None:
    pairs = [
        (ids.account_id_problem, ids.ACCOUNT_ID),
        (ids.source_problem, ids.SOURCE),
        (ids.asset_code_problem, ids.ASSET_CODE),
        (ids.symbol_problem, ids.SYMBOL),
        (ids.order_id_problem, ids.ORDER_ID),
        (ids.client_order_id_problem, ids.CLIENT_ORDER_ID),
        (ids.deposit_id_problem, ids.DEPOSIT_ID),
    ]
    for function, rule in pairs:
        for value in good_values(rule)[:2] + bad_values(rule)[:5]:
            assert function(value) == rule.problem(value)


def test_patterns_are_not_anchored_with_caret_and_dollar() -> None:
    """They are used with fullmatch; `$` would also match before a final newline."""
    for rule in RULES:
        assert "^" not in rule.pattern.pattern and "$" not in rule.pattern.pattern


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
@given(value=st.text(max_size=80))
@example(value="A\n")
@example(value="\n")
def test_a_valid_value_is_short_visible_ascii_without_spaces(rule: IdRule, value: str) -> None:
    if not rule.is_valid(value):
        return
    assert 1 <= len(value) <= rule.max_length
    assert all("!" <= char <= "~" for char in value)
    assert rule.pattern.fullmatch(value)


@pytest.mark.parametrize("rule", RULES, ids=_rule_id)
@given(data=st.data())
def test_every_string_of_the_alphabet_within_the_length_is_valid(rule: IdRule, data: st.DataObject) -> None:
    """The rule is the pattern plus the length, nothing hidden: a value drawn from the pattern passes."""
    value = data.draw(st.from_regex(rule.pattern, fullmatch=True).filter(lambda v: len(v) <= rule.max_length))
    assert rule.problem(value) is None


def test_limits() -> None:
    assert ids.scale_problem(0) is None and ids.scale_problem(ids.MAX_SCALE) is None
    for scale in (-1, ids.MAX_SCALE + 1, 2**32 - 1, True, "2", 2.0):
        assert ids.scale_problem(scale), scale
    assert ids.fee_bps_problem(0) is None and ids.fee_bps_problem(ids.MAX_FEE_BPS) is None
    for bps in (-1, ids.MAX_FEE_BPS + 1, 10_000):
        assert ids.fee_bps_problem(bps), bps
    assert ids.book_depth_problem(1) is None and ids.book_depth_problem(ids.MAX_BOOK_DEPTH) is None
    for depth in (0, -1, ids.MAX_BOOK_DEPTH + 1):
        assert ids.book_depth_problem(depth), depth
    assert ids.INT64_MAX == 2**63 - 1
    assert ids.MAX_DECIMAL_PLACES == ids.MAX_SCALE
    assert 10**ids.MAX_DECIMAL_INTEGER_DIGITS > ids.INT64_MAX > 10 ** (ids.MAX_DECIMAL_INTEGER_DIGITS - 1)
    # A product of two bounded decimals over the finest increment, and an int64 count of the largest
    # decimal, both fit the precision exactly.
    digits = ids.MAX_DECIMAL_INTEGER_DIGITS + ids.MAX_DECIMAL_PLACES
    assert 2 * digits + ids.MAX_DECIMAL_PLACES <= ids.DECIMAL_PRECISION
    assert len(str(ids.INT64_MAX)) + digits <= ids.DECIMAL_PRECISION


# --- order ids ------------------------------------------------------------------------------------

_HEX_TAIL = re.compile(f"[0-9a-f]{{{ids.ORDER_ID_HEX_LENGTH}}}")


def _reference_shard_of(order_id: str) -> str | None:
    """shard_of_order_id as its docstring states it, spelled with the patterns alone."""
    shard, dot, tail = order_id.rpartition(".")
    if dot and _HEX_TAIL.fullmatch(tail) and ids.SOURCE.is_valid(shard):
        return shard
    return None


def test_order_ids_never_repeat_across_many_blocks_of_random_bits() -> None:
    made = [ids.make_order_id("trading-1") for _ in range(10 * ids.ORDER_ID_RANDOM_BLOCK + 7)]
    assert len(set(made)) == len(made)
    for order_id in made:
        assert ids.ORDER_ID.is_valid(order_id) and ids.shard_of_order_id(order_id) == "trading-1"
    # Random, not counted: the digits of consecutive ids share no common prefix as a counter's would.
    assert len({order_id[len("trading-1.") :][:8] for order_id in made}) > len(made) // 2


def test_a_forked_process_never_makes_its_parents_next_ids() -> None:
    ids.make_order_id("trading-0")  # the parent holds a block with unused digits
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        try:
            os.write(writing, " ".join(ids.make_order_id("trading-0") for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        childs = set(pipe.read().split())
    os.waitpid(child, 0)
    parents = {ids.make_order_id("trading-0") for _ in range(50)}
    assert len(childs) == 50 and not childs & parents


@given(
    shard=st.one_of(
        st.sampled_from(["trading-0", "eu.trading-1", "", "trading:1", "x" * 65, "a b", "tr\u00e4ding"]),
        st.text(max_size=8),
    ),
    tail=st.one_of(
        st.text(alphabet="0123456789abcdefABCDEF\n .", min_size=30, max_size=34),
        st.sampled_from(["0" * 32, "f" * 32, "3f2b8c1d9e0a4b5c" * 2]),
    ),
    dot=st.sampled_from([".", "", ".."]),
)
@example(shard="trading-0", tail="0" * 32, dot=".")
@example(shard="trading-0", tail="0" * 31 + "\n", dot=".")
@example(shard="trading-0", tail="0" * 31 + "g", dot=".")
def test_the_shard_read_back_is_what_the_patterns_say(shard: str, tail: str, dot: str) -> None:
    order_id = f"{shard}{dot}{tail}"
    # Twice: the second answer comes from what the first remembered about the shard name.
    assert ids.shard_of_order_id(order_id) == _reference_shard_of(order_id)
    assert ids.shard_of_order_id(order_id) == _reference_shard_of(order_id)


def test_the_shard_names_and_order_ids_remembered_stay_bounded_and_right() -> None:
    tail = "0" * ids.ORDER_ID_HEX_LENGTH
    for number in range(2 * ids._SHARD_NAMES_REMEMBERED + 3):
        name = f"shard-{number}" if number % 2 else f"shard:{number}"  # valid and invalid names
        assert ids.shard_of_order_id(f"{name}.{tail}") == (name if number % 2 else None)
        assert len(ids._SHARD_NAME_VALID) <= ids._SHARD_NAMES_REMEMBERED
    made = [ids.make_order_id(f"trading-{number % 3}") for number in range(ids._ORDER_IDS_REMEMBERED + 5)]
    for number, order_id in enumerate(made):
        assert ids.shard_of_order_id(order_id) == f"trading-{number % 3}"
        assert len(ids._SHARD_OF_ORDER_ID) <= ids._ORDER_IDS_REMEMBERED
    assert [ids.shard_of_order_id(order_id) for order_id in made[:3]] == [
        "trading-0",
        "trading-1",
        "trading-2",
    ]
    assert ids.shard_of_order_id(f"trading-0.{tail}") == "trading-0"
