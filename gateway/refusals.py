"""Refusals of risk and trading as the gateway's caller hears them.

Risk and trading answer with a RejectReason; this module turns each into the
status and sentence the public API gives, and names the failures whose
outcome is known (nothing happened) apart from those where the command may
have taken effect (OUTCOME_UNKNOWN: the caller asks GetOrder).
"""

from __future__ import annotations

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.money import format_minor
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2
from backbone.runtime.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    not_found,
    unavailable,
)

log = structlog.get_logger("backbone.gateway")

# Commands a BatchingStream never sent: their outcome is known (nothing happened).
NOT_SENT_REASONS = frozenset(
    {RejectReason.BACKPRESSURE, RejectReason.SERVICE_STOPPING, RejectReason.CLIENT_ORDER_ID_UNCHECKED}
)

_RISK_SENTENCES = {
    RejectReason.INSUFFICIENT_BALANCE: "the account's available balance does not cover this order "
    "(price x quantity plus fees for a buy, the quantity for a sell)",
    RejectReason.UNKNOWN_SYMBOL: "risk does not know this instrument yet; retry shortly",
    RejectReason.ACCOUNT_HALTED: "the account is halted: one of its trades could not be posted and is "
    "parked until an operator resolves it (AdminService ListParkedTrades, RetryParkedTrade)",
}
# Risk could not decide now; the same order may pass later.
_RISK_TRANSIENT_REASONS = frozenset(
    {RejectReason.REDIS_UNAVAILABLE, RejectReason.SERVICE_STARTING, RejectReason.RISK_REBUILDING}
)
_TRADING_SENTENCES = {
    RejectReason.UNKNOWN_SYMBOL: "the matching engine does not know this instrument",
    RejectReason.DUPLICATE_ORDER_ID: "the matching engine already has an order with this id",
    RejectReason.INVALID_ORDER: "the matching engine refused the order's side, price or quantity",
    RejectReason.ORDER_FENCED: "the order was not placed: its outcome was resolved as never placed "
    "while it was on its way (a retry with the same client_order_id asked); send it again with the "
    "same client_order_id",
    RejectReason.INSTRUMENT_HALTED: "the instrument is halted: it takes no new orders until an operator "
    "resumes it (cancels still work)",
    RejectReason.INSTRUMENT_CLOSED: "the instrument is closed: it takes no new orders until it trades "
    "again (cancels still work)",
}


def reason_of(number: int) -> RejectReason:
    """The reason of a refusal from risk or trading; one without a reason breaks their contract."""
    reason = RejectReason.from_number(number)
    return RejectReason.PROTOCOL_ERROR if reason == RejectReason.UNSPECIFIED else reason


def _sentence(reason: RejectReason, known: dict[RejectReason, str], who: str) -> str:
    return known.get(reason, f"{who} refused the order ({reason})")


def risk_refusal(reservation: risk_pb2.ReservationResult, instrument: common_pb2.Instrument) -> ServiceError:
    """A reserve risk did not grant: FAILED_PRECONDITION, or UNAVAILABLE when risk could not decide."""
    reason = reason_of(reservation.reject_reason)
    log.info("order refused by risk", reason=reason)
    if reason in _RISK_TRANSIENT_REASONS:
        return unavailable(reason, f"the order was not placed: risk could not check it now ({reason}); retry")
    sentence = _sentence(reason, _RISK_SENTENCES, "risk")
    scale = {
        instrument.base_asset: instrument.base_scale,
        instrument.quote_asset: instrument.quote_scale,
    }.get(reservation.asset)
    if reason == RejectReason.INSUFFICIENT_BALANCE and scale is not None and reservation.amount > 0:
        sentence = (
            f"the order needs {format_minor(reservation.amount, scale)} {reservation.asset} "
            "available (price x quantity plus fees for a buy, the quantity for a sell) "
            "and the account has less"
        )
    return failed_precondition(reason, sentence)


def trading_refusal(report: common_pb2.ExecutionReport, order_id: str) -> ServiceError:
    """A new order the matching engine rejected."""
    reason = reason_of(report.reject_reason)
    log.info("order refused by trading", reason=reason)
    if reason == RejectReason.RISK_REBUILT:
        return unavailable(
            reason,
            "the order was not placed: risk rebuilt its state while the order was on its way; "
            "retry with the same client_order_id",
        )
    return failed_precondition(
        reason, _sentence(reason, _TRADING_SENTENCES, "the matching engine"), order_id=order_id
    )


def cancel_refusal(report: common_pb2.ExecutionReport, order_id: str) -> ServiceError:
    """A cancel the matching engine rejected; another account's order is as unknown as a missing one."""
    return _order_command_refusal(report, order_id, "cancel")


def replace_refusal(report: common_pb2.ExecutionReport, order_id: str) -> ServiceError:
    """A replace the matching engine rejected (nothing changed), as a cancel's."""
    return _order_command_refusal(report, order_id, "replace")


def _order_command_refusal(report: common_pb2.ExecutionReport, order_id: str, what: str) -> ServiceError:
    reason = reason_of(report.reject_reason)
    log.info(f"{what} refused by trading", reason=reason, order_id=order_id)
    if reason in (RejectReason.UNKNOWN_ORDER, RejectReason.NOT_ORDER_OWNER):
        return order_not_found(order_id)
    if reason == RejectReason.ORDER_NOT_OPEN:
        return order_not_open(order_id)
    if reason == RejectReason.RISK_REBUILT:
        return unavailable(
            reason, f"the order's {what} was not done: risk rebuilt its state while it was on its way; retry"
        )
    return failed_precondition(
        reason, f"the matching engine refused the {what} ({reason})", order_id=order_id
    )


def order_not_open(order_id: str) -> ServiceError:
    return failed_precondition(
        RejectReason.ORDER_NOT_OPEN,
        f"order {order_id} is no longer open (filled or cancelled)",
        order_id=order_id,
    )


def replace_refused_by_risk(grow: risk_pb2.ReservationResult, order: common_pb2.Order) -> ServiceError:
    """A replace risk did not grow the hold for: nothing changed."""
    reason = reason_of(grow.reject_reason)
    log.info("replace refused by risk", reason=reason, order_id=order.order_id)
    if reason in _RISK_TRANSIENT_REASONS:
        return unavailable(
            reason, f"the order was not replaced: risk could not check it now ({reason}); retry"
        )
    if reason == RejectReason.ORDER_NOT_OPEN:
        return order_not_open(order.order_id)
    if reason == RejectReason.REPLACE_IN_FLIGHT:
        return failed_precondition(
            reason,
            f"another replace of order {order.order_id} is on its way; wait for its answer, then send this "
            "one again (after a replace answered OUTCOME_UNKNOWN, GetOrder shows whether it was applied; "
            "a cancel always works)",
            order_id=order.order_id,
        )
    if reason == RejectReason.INSUFFICIENT_BALANCE:
        return failed_precondition(
            reason,
            "the account's available balance does not cover what the replaced order may cost "
            "beyond what it holds now; nothing was changed",
            order_id=order.order_id,
        )
    return failed_precondition(reason, _sentence(reason, _RISK_SENTENCES, "risk"), order_id=order.order_id)


def trading_unreachable() -> ServiceError:
    """A new order that was not placed because its shard's matching engine cannot be reached."""
    return unavailable(
        RejectReason.TRADING_UNAVAILABLE,
        "the order was not placed: the matching engine cannot be reached; "
        "retry with the same client_order_id",
    )


def risk_unreachable(error: ServiceError) -> ServiceError:
    """The reserve could not be had from risk: nothing was placed (backpressure is passed on as is)."""
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return error
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.RISK_UNAVAILABLE,
        f"the order was not placed: risk could not be reached ({error.message}); "
        "retry with the same client_order_id",
    )


def outcome_unknown(
    order_id: str, error: ServiceError, *, cancel: bool = False, replace: bool = False
) -> ServiceError:
    """Trading may have taken the command: the caller learns its state from GetOrder."""
    log.warning(
        "trading outcome unknown", order_id=order_id, why=error.message, cancel=cancel, replace=replace
    )
    if replace:
        message = (
            f"the matching engine did not confirm the replace of order {order_id} ({error.message}); "
            "the gateway settles it by itself (applied, or fenced: never applied, and what risk held "
            "for it given back): call GetOrder to learn the order's state"
        )
    elif cancel:
        message = (
            f"the matching engine did not confirm the cancel of order {order_id} ({error.message}); "
            "call GetOrder to learn the order's state"
        )
    else:
        message = (
            f"the matching engine did not confirm order {order_id} ({error.message}); it may be "
            "live: call GetOrder with this order_id to learn its state"
        )
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE, RejectReason.OUTCOME_UNKNOWN, message, (), {"order_id": order_id}
    )


def order_not_found(order_id: str) -> ServiceError:
    return not_found(
        RejectReason.UNKNOWN_ORDER, f"there is no order {order_id!r} in this account", order_id=order_id
    )


def gateway_failed(order_id: str, error: Exception) -> ServiceError:
    """The gateway itself failed (a bug) while carrying out a command: its outcome is unknown."""
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.OUTCOME_UNKNOWN,
        f"the gateway failed while carrying out this command ({error!r}); call GetOrder",
        (),
        {"order_id": order_id},
    )


def duplicate_client_order_id(client_order_id: str, holder_id: str) -> ServiceError:
    """The client order id is held by a different order, which trading has (GetOrder finds it)."""
    return already_exists(
        RejectReason.DUPLICATE_CLIENT_ORDER_ID,
        f"client_order_id {client_order_id!r} was already used by order {holder_id}, a different "
        "order; GetOrder returns it",
        order_id=holder_id,
    )


def client_order_id_in_flight(client_order_id: str, holder_id: str) -> ServiceError:
    """The client order id is held by an order whose submission may still be under way."""
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.OUTCOME_UNKNOWN,
        f"client_order_id {client_order_id!r} belongs to order {holder_id}, which is still being "
        "placed; its outcome is not known yet: retry in a few seconds with the same client_order_id "
        "(it answers with that order), or call GetOrder with this order_id",
        (),
        {"order_id": holder_id},
    )


def holder_unconfirmed(client_order_id: str, holder_id: str, error: ServiceError) -> ServiceError:
    """The client order id is held by an order the matching engine cannot confirm now."""
    log.info("client order id holder not confirmed", holder_id=holder_id, why=error.message)
    return unavailable(
        RejectReason.TRADING_UNAVAILABLE,
        f"client_order_id {client_order_id!r} belongs to order {holder_id}, which the matching "
        f"engine cannot confirm now ({error.message}); nothing was done: retry with the same "
        "client_order_id",
    )
