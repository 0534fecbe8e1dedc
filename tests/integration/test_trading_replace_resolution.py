"""ResolveReplaces against a real PostgreSQL: trading settles replaces whose outcome is unknown.

A replace applied with its replace id is answered APPLIED and journals nothing; one the engine
never saw is fenced (a replace_fenced record, sent to risk through the outbox) and answered
FENCED, and the late replace is refused REPLACE_FENCED changing nothing; an order the engine does
not hold is ORDER_GONE. A restart replays the fence to the same digest, and the late replace is
still refused. Malformed requests are INVALID_ARGUMENT naming the field, and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.integration.test_trading_journal import (
    BUY,
    Trading,
    _Risk,
    journal_rows,
    new,
    refused,
    risk,
    settings_for,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration
__all__ = ["risk"]  # the stand-in risk receiver fixture, used by these tests

APPLIED = trading_pb2.REPLACE_RESOLUTION_APPLIED
FENCED = trading_pb2.REPLACE_RESOLUTION_FENCED
GONE = trading_pb2.REPLACE_RESOLUTION_ORDER_GONE


def replace(order_id: str, price: int, lots: int, replace_id: str) -> trading_pb2.OrderCommand:
    command = trading_pb2.ReplaceOrder(
        order_id=order_id, account_id="acct-1", price_ticks=price, quantity_lots=lots, replace_id=replace_id
    )
    return trading_pb2.OrderCommand(replace_order=command)


def asked(*replaces: tuple[str, str, str]) -> trading_pb2.ResolveReplacesRequest:
    return trading_pb2.ResolveReplacesRequest(
        replaces=[
            trading_pb2.ReplaceToResolve(order_id=order_id, account_id=account_id, replace_id=replace_id)
            for order_id, account_id, replace_id in replaces
        ]
    )


async def test_replaces_resolve_as_applied_fenced_or_gone_and_a_fence_survives_a_restart(
    new_database: Callable[[], str], risk: tuple[str, _Risk]
) -> None:
    database_url = new_database()
    risk_address, receiver = risk
    async with Trading(settings_for(database_url, risk=risk_address)) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        await trading.send([new("b", BUY, 100, 5)], [replace("b", 101, 6, "applied-1")])
        rows = len(journal_rows(database_url))
        answer = await trading.stub.ResolveReplaces(
            asked(("b", "acct-1", "applied-1"), ("b", "acct-1", "lost-2"), ("nope", "acct-1", "lost-3"))
        )
        assert [(r.order_id, r.replace_id, r.resolution) for r in answer.results] == [
            ("b", "applied-1", APPLIED),
            ("b", "lost-2", FENCED),
            ("nope", "lost-3", GONE),
        ]
        assert answer.results[0].order.price_ticks == 101 and not answer.results[2].HasField("order")
        kinds = [kind for _, kind in journal_rows(database_url)]
        assert kinds[rows:] == ["replace_fenced"]  # one fence, nothing for the applied replace
        # Risk is sent the fence through the outbox.
        await eventually(
            lambda: any(kind == "replace_fenced" for _, _, kind in receiver.events), "risk is sent the fence"
        )
        # Asked again: the same answers, nothing more journaled.
        again = await trading.stub.ResolveReplaces(asked(("b", "acct-1", "lost-2")))
        assert again.results[0].resolution == FENCED and len(journal_rows(database_url)) == rows + 1
        # The lost replace arriving late is refused, and changes nothing.
        state = trading.app.engine.state_hash()
        (late,) = await trading.send([replace("b", 120, 9, "lost-2")])
        (report,) = late.results[0].reports
        assert report.execution_type == common_pb2.EXECUTION_TYPE_REJECTED
        assert report.reject_reason == RejectReason.REPLACE_FENCED.number
        assert trading.app.engine.state_hash() == state
        trading.app.engine.validate()
    async with Trading(settings_for(database_url, risk=risk_address)) as restarted:
        assert restarted.app.engine.state_hash() == state
        (late,) = await restarted.send([replace("b", 120, 9, "lost-2")])
        assert late.results[0].reports[0].reject_reason == RejectReason.REPLACE_FENCED.number
        answer = await restarted.stub.ResolveReplaces(asked(("b", "acct-1", "applied-1")))
        assert answer.results[0].resolution == APPLIED


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (trading_pb2.ResolveReplacesRequest(), "replaces", RejectReason.REQUIRED),
        (asked(("", "acct-1", "r1")), "replaces[0].order_id", RejectReason.INVALID_ORDER_ID),
        (asked(("b", "acct 1", "r1")), "replaces[0].account_id", RejectReason.INVALID_ACCOUNT_ID),
        (
            asked(("b", "acct-1", "r1"), ("b", "acct-1", "")),
            "replaces[1].replace_id",
            RejectReason.INVALID_ORDER_ID,
        ),
        (asked(("b", "acct-1", "r\n")), "replaces[0].replace_id", RejectReason.INVALID_ORDER_ID),
        (asked(("b", "acct-1", "r" * 500)), "replaces[0].replace_id", RejectReason.INVALID_ORDER_ID),
        (
            asked(*[("b", "acct-1", f"r{n}") for n in range(10_001)]),
            "replaces",
            RejectReason.TOO_MANY_COMMANDS,
        ),
    ],
)
async def test_malformed_resolve_replaces_requests_are_refused_naming_the_field(
    new_database: Callable[[], str],
    risk: tuple[str, _Risk],
    request_: trading_pb2.ResolveReplacesRequest,
    field: str,
    reason: RejectReason,
) -> None:
    database_url = new_database()
    async with Trading(settings_for(database_url, risk=risk[0])) as trading:
        await trading.stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
        await trading.send([new("b", BUY, 100, 5)])
        rows = journal_rows(database_url)
        error = await refused(trading.stub.ResolveReplaces(request_))
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert [violation.field for violation in error.violations] == [field]
        assert journal_rows(database_url) == rows
