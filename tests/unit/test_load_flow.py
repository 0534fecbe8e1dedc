"""The simulator's pure parts: the seeded flow, its mix, the ramp's rates, the recorder, the digest."""

from __future__ import annotations

import argparse
from decimal import Decimal

import pytest

from backbone.gateway.v1 import gateway_pb2
from ops.perf.drivers import Tracker
from ops.perf.flow import BUY, CANCEL, IOC, REPLACE, SUBMIT, Flow, Mix, fill_replace, fill_submit, hundredths
from ops.perf.market import Market, check_prefix
from ops.perf.options import add_bench_arguments, add_load_arguments
from ops.perf.recorder import Recorder, Timeline, outcome_name
from ops.perf.simulator import digest, problems_of, ramp_rates, validate

MIDS = [10_000, 20_000, 30_000]


def _commands(seed: int, count: int) -> list[tuple[object, ...]]:
    flow = Flow(seed, 5, MIDS)
    made: list[tuple[object, ...]] = []
    for number in range(count):
        command = flow.next()
        if command.kind == SUBMIT and number % 3 == 0:  # some orders rest, as answers would say
            flow.opened(command.account, f"order-{number}")
        made.append(
            (command.kind, command.account, command.symbol, command.side, command.price_ticks, command.lots,
             command.client_order_id, command.order_id)
        )  # fmt: skip
    return made


def test_the_same_seed_makes_the_same_commands_and_another_seed_others() -> None:
    assert _commands(7, 2_000) == _commands(7, 2_000)
    assert _commands(7, 2_000) != _commands(8, 2_000)


def test_the_mix_decides_the_kinds_and_cancels_name_open_orders_of_their_account() -> None:
    flow = Flow(3, 4, MIDS, Mix(passive=0, marketable=0, cancel=1))
    first = flow.next()
    assert first.kind == SUBMIT  # nothing open to cancel yet: a passive order instead
    flow.opened(first.account, "resting-1")
    cancels = [flow.next(first.account) for _ in range(3)]
    assert cancels[0].kind == CANCEL and cancels[0].order_id == "resting-1"
    assert all(c.kind == SUBMIT for c in cancels[1:])  # cancelled once, never drawn again
    kinds = [Flow(4, 4, MIDS, Mix(passive=1, marketable=0, cancel=0)).next().kind for _ in range(50)]
    assert set(kinds) == {SUBMIT}


def test_replaces_move_an_open_order_on_its_side_of_the_mid_and_iocs_cross_it() -> None:
    flow = Flow(5, 1, [40_000], Mix(passive=0, marketable=0, cancel=0, ioc=0, replace=1))
    placed = flow.next()
    assert placed.kind == SUBMIT  # nothing open to replace yet: a passive order instead
    flow.opened(placed.account, "resting-1", placed)
    replace = flow.next(placed.account)
    assert (replace.kind, replace.order_id, replace.side) == (REPLACE, "resting-1", placed.side)
    assert 1 <= abs(replace.price_ticks - placed.price_ticks) <= 3
    mid = flow.mids[0]
    assert replace.price_ticks < mid if placed.side == BUY else replace.price_ticks > mid
    assert flow.next(placed.account).kind == SUBMIT  # taken out while its replace is on its way
    flow.opened(placed.account, "resting-1", replace)  # answered open at the new price: drawn again
    again = flow.next(placed.account)
    assert again.kind == REPLACE and abs(again.price_ticks - replace.price_ticks) <= 3
    request = gateway_pb2.ReplaceOrderRequest()
    fill_replace(request, flow, again)
    assert (request.order_id, request.price) == ("resting-1", hundredths(again.price_ticks))
    iocs = Flow(6, 2, [40_000], Mix(passive=0, marketable=0, cancel=0, ioc=1))
    for _ in range(100):
        command = iocs.next()
        assert command.ioc and (command.price_ticks > iocs.mids[0]) == (command.side == BUY)
        submit = gateway_pb2.SubmitOrderRequest()
        fill_submit(submit, iocs, command, ["X-USD"])
        assert submit.time_in_force == IOC
    assert Mix.parse("passive=1,ioc=1,replace=2").as_dict() == {
        "passive": 0.25,
        "marketable": 0.0,
        "cancel": 0.0,
        "ioc": 0.25,
        "replace": 0.5,
    }


def test_passive_orders_stay_on_their_side_of_the_mid_and_marketable_ones_cross_it() -> None:
    for mix, crosses in ((Mix(1, 0, 0), False), (Mix(0, 1, 0), True)):
        flow = Flow(11, 2, [50_000], mix)
        for _ in range(500):
            before = flow.mids[0]
            command = flow.next()
            mid = flow.mids[0]  # the walk moves before the order is priced
            above = command.price_ticks > mid
            assert above == ((command.side == BUY) == crosses)
            assert abs(mid - before) < 50 and 1 <= command.lots <= 100


def test_client_order_ids_are_numbered_with_the_prefix_and_requests_carry_decimal_strings() -> None:
    flow = Flow(1, 1, [12_345], Mix(1, 0, 0), id_prefix="s")
    command = flow.next()
    assert command.client_order_id == "s0" and flow.next().client_order_id == "s1"
    request = gateway_pb2.SubmitOrderRequest()
    fill_submit(request, flow, command, ["ABC-USD"])
    assert request.symbol == "ABC-USD" and request.client_order_id == "s0"
    assert Decimal(request.price) == Decimal(command.price_ticks) / 100
    assert Decimal(request.quantity) == Decimal(command.lots) / 100
    assert hundredths(5) == "0.05" and hundredths(12_345) == "123.45"


def test_mix_parsing_and_option_checks_name_what_is_wrong() -> None:
    assert Mix.parse("passive=3,cancel=1").normalised() == {
        "passive": 0.75,
        "marketable": 0.0,
        "cancel": 0.25,
        "ioc": 0.0,
        "replace": 0.0,
    }
    for bad in ("passive", "market=1", "passive=x", "passive=0,cancel=0", "passive=-1,cancel=2"):
        with pytest.raises(ValueError):
            Mix.parse(bad)
    with pytest.raises(ValueError, match="upper-case"):
        check_prefix("sim")
    parser = argparse.ArgumentParser()
    add_load_arguments(parser)
    assert validate(parser.parse_args(["--target", "127.0.0.1:1"])) == "--target needs --admin-key"
    assert validate(parser.parse_args(["--mix", "cancel=0"])) is not None
    assert validate(parser.parse_args(["--prefix", "A-B"])) is not None
    assert validate(parser.parse_args([])) is None
    for arguments in (["--rate", "0"], ["--accounts", "0"], ["--error-limit", "2"], ["--warmup", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(arguments)
    bench = argparse.ArgumentParser()
    add_bench_arguments(bench)
    with pytest.raises(SystemExit):
        bench.parse_args(["--seconds", "nan"])


def test_ramp_rates_step_up_to_the_maximum() -> None:
    assert ramp_rates(100, 2, 800) == [100, 200, 400, 800]
    assert ramp_rates(100, 1.5, 100) == [100]
    assert ramp_rates(100, 1.0, 1_000) == [100]


def test_the_recorder_counts_outcomes_and_leaves_expected_refusals_out_of_errors() -> None:
    recorder = Recorder("test")
    for t in range(4):
        recorder.sent_one(float(t), submit=True)
    assert recorder.answered_one(1.0, "OK") is False
    assert recorder.answered_one(2.0, outcome_name(9, 303)) is False  # a cancel that raced a fill
    assert recorder.answered_one(3.0, outcome_name(8, 500)) is True
    assert outcome_name(9, 303) == "FAILED_PRECONDITION/ORDER_NOT_OPEN"
    assert outcome_name(0, 0) == "OK"
    assert recorder.errors == 1 and recorder.unanswered == 1
    assert recorder.error_rate() == 0.5  # one error and one never answered, of four
    recorder.ack.record(0.002)
    summary = recorder.summary()
    assert summary["latency_ms"]["submit_to_ack"]["p50"] == pytest.approx(2.0, rel=0.01)
    assert summary["latency_ms"]["submit_to_fill"]["p99"] is None


def test_the_timeline_divides_its_last_window_by_the_time_it_covered() -> None:
    timeline = Timeline(100.0)
    timeline.at(100.2).sent += 10
    timeline.at(101.1).sent += 5
    rows = timeline.rows(end=101.5)
    assert [row["t"] for row in rows] == [0.0, 1.0]
    assert rows[0]["sent_per_s"] == 10.0 and rows[1]["sent_per_s"] == pytest.approx(10.0, rel=0.01)


def _market(prefix: str) -> Market:
    return Market(
        prefix, [f"{prefix}0-USD"], ["USD", f"{prefix}0"], [f"{prefix.lower()}-0"], [f"key-{prefix}"]
    )


def test_the_digest_leaves_out_names_ids_and_keys_of_the_run() -> None:
    def tracked(market: Market, trade_ids: list[str]) -> Tracker:
        tracker = Tracker(Flow(1, 1, MIDS), market.symbols, Timeline(0.0), follow_reports=True)
        for number, trade_id in enumerate(trade_ids):
            tracker.trades[trade_id] = [0, "100.00", f"{number + 1}.00", f"c{number}", f"c{number + 10}"]
        return tracker

    def balances(base: str, total: str) -> list[dict[str, tuple[Decimal, Decimal, Decimal]]]:
        zero = Decimal(0)
        return [{"USD": (Decimal(total), zero, Decimal(total)), base: (Decimal("5"), zero, Decimal("5"))}]

    one, other = _market("ONE"), _market("TWO")
    first = digest(one, tracked(one, ["7", "8", "10"]), balances("ONE0", "99.5"))
    # Another run on the same system: other names, trade ids further on; the same trades in order.
    assert digest(other, tracked(other, ["17", "18", "20"]), balances("TWO0", "99.5")) == first
    assert digest(other, tracked(other, ["18", "17", "20"]), balances("TWO0", "99.5")) != first
    assert digest(one, tracked(one, ["7", "8", "10"]), balances("ONE0", "99.4")) != first


def test_a_run_that_lost_or_duplicated_anything_says_what() -> None:
    clean = {
        "unanswered": 0, "duplicate_fills": 0, "duplicate_results": 0, "incomplete_trades": 0,
        "settled": True, "settlement": "ledger: 5 of 5", "invariants": "ok",
    }  # fmt: skip
    assert problems_of(clean) == []
    assert problems_of({**clean, "incomplete_trades": None}) == []  # a unary run without feeds
    found = problems_of(
        {**clean, "unanswered": 2, "duplicate_fills": 1, "settled": False, "invariants": "violated"}
    )
    assert len(found) == 4
    assert any("never answered" in p for p in found) and any("invariant" in p for p in found)
