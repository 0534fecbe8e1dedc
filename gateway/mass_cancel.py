"""Cancel every open order of an account (of one symbol): CancelAllOrders and the StreamOrders
``mass_cancel`` command.

The gateway checks the account (the caller's own) and the symbol (known), then sends one
MassCancel command on the order stream of the symbol's trading shard (of every shard when no symbol
is given; when one of them cannot be reached nothing is sent): the engine cancels the orders in book order,
journals a release for each (risk frees their reservations from those), and answers with one
CANCELLED report per order. A mass cancel is idempotent in effect (a second one finds nothing
open), so an unknown outcome is answered UNAVAILABLE asking the caller to send it again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, failed_precondition, not_found, unavailable
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import Backends
from gateway.validation import validate_symbol_field


@dataclass(frozen=True, slots=True)
class MassCancelled:
    """What a mass cancel did: its CANCELLED reports, in book order, and the instruments they name."""

    reports: list[common_pb2.ExecutionReport]
    instruments: dict[str, common_pb2.Instrument]

    @property
    def trading_sequence(self) -> int:
        """The journal sequence a balance read must reflect to show every release (0: none)."""
        return max((report.journal_sequence for report in self.reports), default=0)


async def check_symbol(backends: Backends, symbol: str) -> None:
    """An optional symbol filter: empty, or a well-formed symbol of a known instrument."""
    if not symbol:
        return
    validate_symbol_field(symbol)
    if await backends.instruments.get(symbol) is None:
        raise not_found(RejectReason.UNKNOWN_SYMBOL, f"there is no instrument {symbol!r}", symbol=symbol)


async def mass_cancel(backends: Backends, account_id: str, symbol: str) -> MassCancelled:
    """Cancel every open order of `account_id` (an authenticated, permitted account) in `symbol`
    (checked with check_symbol; empty: every symbol). Raises ServiceError."""
    shards = backends.trading_shards
    # A symbol's orders are on its shard; an account's orders of every symbol on any shard.
    targets = [shards.of_symbol(symbol)] if symbol else list(shards.all)
    down = await shards.down(targets)
    if down:  # all or nothing sent: the caller retries the whole mass cancel
        raise unavailable(
            RejectReason.TRADING_UNAVAILABLE,
            f"nothing was cancelled: the matching engine cannot be reached (trading shard "
            f"{', '.join(sorted(down))}); retry",
        )
    command = trading_pb2.OrderCommand(
        mass_cancel=trading_pb2.MassCancel(account_id=account_id, symbol=symbol)
    )
    answers = await asyncio.gather(*(shard.orders.submit_many([command]) for shard in targets))
    reports: list[common_pb2.ExecutionReport] = []
    for (answer,) in answers:
        reports += _cancelled(answer, symbol)
    backends.reported.note(reports)
    instruments: dict[str, common_pb2.Instrument] = {}
    for symbol_of_order in sorted({report.order.symbol for report in reports}):
        instrument = await backends.instruments.get(symbol_of_order)
        if instrument is None:  # trading made the order, so it knows the instrument
            raise unavailable(RejectReason.PROTOCOL_ERROR, f"no instrument {symbol_of_order!r} for a report")
        instruments[symbol_of_order] = instrument
    return MassCancelled(reports, instruments)


def _cancelled(
    answer: trading_pb2.CommandResult | ServiceError, symbol: str
) -> list[common_pb2.ExecutionReport]:
    """The CANCELLED reports of one shard's answer to a mass cancel; raises ServiceError for a refusal
    or an unknown outcome."""
    if isinstance(answer, ServiceError):
        if answer.reason in refusals.NOT_SENT_REASONS or answer.reason == RejectReason.NOT_SENT:
            raise answer
        raise unavailable(
            RejectReason.OUTCOME_UNKNOWN,
            "the matching engine did not confirm the mass cancel (some orders may be cancelled); "
            "send it again: a mass cancel cancels what is still open",
        )
    rejected = next(
        (r for r in answer.reports if r.execution_type == common_pb2.EXECUTION_TYPE_REJECTED), None
    )
    if rejected is not None:
        reason = refusals.reason_of(rejected.reject_reason)
        if reason == RejectReason.UNKNOWN_SYMBOL:
            raise not_found(reason, f"there is no instrument {symbol!r}", symbol=symbol)
        raise failed_precondition(reason, f"the matching engine refused the mass cancel ({reason})")
    return [r for r in answer.reports if r.execution_type == common_pb2.EXECUTION_TYPE_CANCELLED]
