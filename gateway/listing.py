"""ListOrders and ListFills requests -> trading queries: every field checked, page tokens (pure, no I/O).

A page token says where the next page starts (after the last order: its created_ns and
order id; after the last fill: its trade id and side) and is bound to its query: the kind of
list, the account and every filter are hashed into it with the position. A token that was
altered, made up, or comes from another query (other filters, another account, the other
list) does not match and is refused with INVALID_ARGUMENT (INVALID_PAGE_TOKEN); the page size
may change from page to page. The hash is not keyed: a token is not an authorization (the
account is the API key's, checked on every page, and a token only moves the start within
that account's own list), so a caller able to build a matching token gains nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.money import INT64_MAX
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from gateway.validation import Violations, trade_id_problem

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1_000

_TOKEN_VERSION = 1
_ORDERS, _FILLS = b"o", b"f"
_DIGEST_BYTES = 12
_ORDER_POSITION = struct.Struct(">q")  # created_ns, then the order id's bytes
_FILL_POSITION = struct.Struct(">qB")  # trade id, side, then the shard name's bytes (if any)
_SIDES = (common_pb2.SIDE_BUY, common_pb2.SIDE_SELL)
_NANOS_PER_SECOND = 1_000_000_000
# Timestamp's own range (0001-01-01 to 9999-12-31); only times from 1970 on are accepted.
_MAX_TIMESTAMP_SECONDS = 253_402_300_799


@dataclass(frozen=True)
class OrdersQuery:
    """A checked ListOrders: the trading request of its page and what binds its tokens."""

    request: trading_pb2.ListOpenOrdersRequest
    binding: bytes


@dataclass(frozen=True)
class FillsQuery:
    """A checked ListFills: the trading request of its page and what binds its tokens."""

    request: trading_pb2.ListFillsRequest
    binding: bytes
    # The trading shard of the fill the page token ends at ("": the first shard asked). With several
    # shards a ListFills of every symbol walks them in order (gateway/shards.py list_fills).
    shard: str = ""


def orders_query(request: gateway_pb2.ListOrdersRequest, account_id: str) -> OrdersQuery:
    """The trading request of a ListOrders page; INVALID_ARGUMENT naming every wrong field."""
    violations = Violations()
    _check_symbol(request.symbol, violations)
    limit = _page_size(request.page_size, violations)
    binding = _binding(_ORDERS, account_id, request.symbol)
    position = _token_position(request.page_token, _ORDERS, binding, violations)
    after_created_ns, after_order_id = 0, ""
    if position is not None:
        after_created_ns, after_order_id = _order_position(position, violations)
    violations.raise_if_any()
    return OrdersQuery(
        trading_pb2.ListOpenOrdersRequest(
            account_id=account_id,
            symbol=request.symbol,
            limit=limit,
            after_created_ns=after_created_ns,
            after_order_id=after_order_id,
        ),
        binding,
    )


def fills_query(request: gateway_pb2.ListFillsRequest, account_id: str) -> FillsQuery:
    """The trading request of a ListFills page; INVALID_ARGUMENT naming every wrong field."""
    violations = Violations()
    _check_symbol(request.symbol, violations)
    limit = _page_size(request.page_size, violations)
    start_ns = _time_ns(request, "start_time", violations)
    end_ns = _time_ns(request, "end_time", violations)
    start, end = request.start_time, request.end_time
    if None not in (start_ns, end_ns) and (end.seconds, end.nanos) <= (start.seconds, start.nanos):
        violations.add("end_time", RejectReason.INVALID_RANGE, "must be after start_time")
    start_trade_id = _trade_id(request.start_trade_id, "start_trade_id", violations)
    end_trade_id = _trade_id(request.end_trade_id, "end_trade_id", violations)
    if start_trade_id and end_trade_id and end_trade_id <= start_trade_id:
        violations.add("end_trade_id", RejectReason.INVALID_RANGE, "must be above start_trade_id")
    if request.min_trading_sequence < 0:
        violations.add("min_trading_sequence", RejectReason.INVALID_SEQUENCE, "must not be negative")
    binding = _binding(
        _FILLS, account_id, request.symbol, start_ns or 0, end_ns or 0, start_trade_id, end_trade_id
    )
    position = _token_position(request.page_token, _FILLS, binding, violations)
    after_trade_id, after_side, shard = 0, int(common_pb2.SIDE_UNSPECIFIED), ""
    if position is not None:
        after_trade_id, after_side, shard = _fill_position(position, violations)
    violations.raise_if_any()
    return FillsQuery(
        trading_pb2.ListFillsRequest(
            account_id=account_id,
            symbol=request.symbol,
            start_timestamp_ns=start_ns or 0,
            end_timestamp_ns=end_ns or 0,
            start_trade_id=start_trade_id,
            end_trade_id=end_trade_id,
            limit=limit,
            after_trade_id=after_trade_id,
            after_side=after_side,  # type: ignore[arg-type]  # a Side value, checked
            min_sequence=request.min_trading_sequence,
        ),
        binding,
        shard,
    )


def next_orders_token(query: OrdersQuery, last: common_pb2.Order) -> str:
    """The token of the page after the one ending with `last`."""
    return _token(_ORDERS, query.binding, _ORDER_POSITION.pack(last.created_ns) + last.order_id.encode())


def next_fills_token(query: FillsQuery, last: trading_pb2.Fill, shard: str = "") -> str:
    """The token of the page after the one ending with `last` (of trading shard `shard`, named when
    the page walks several)."""
    return _token(_FILLS, query.binding, _FILL_POSITION.pack(last.trade_id, last.side) + shard.encode())


# --- fields -----------------------------------------------------------------------------------


def _check_symbol(symbol: str, violations: Violations) -> None:
    if symbol:
        problem = ids.SYMBOL.problem(symbol)
        if problem:
            violations.add("symbol", ids.SYMBOL.reason, problem)


def _page_size(page_size: int, violations: Violations) -> int:
    if page_size > MAX_PAGE_SIZE:
        violations.add(
            "page_size",
            RejectReason.INVALID_LIMIT,
            f"{page_size} is above the largest page ({MAX_PAGE_SIZE}); 0 means {DEFAULT_PAGE_SIZE}",
        )
    return page_size or DEFAULT_PAGE_SIZE


def _time_ns(request: gateway_pb2.ListFillsRequest, field: str, violations: Violations) -> int | None:
    """A time bound in ns since the epoch (None when unset). Past int64 ns (year 2262), which no
    fill reaches, a start is one below the largest and an end the largest: the range stays valid."""
    if not request.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(request, field)
    if not 0 <= stamp.nanos < _NANOS_PER_SECOND or stamp.seconds > _MAX_TIMESTAMP_SECONDS:
        violations.add(field, RejectReason.INVALID_RANGE, "is not a valid timestamp")
        return None
    if stamp.seconds < 0 or (stamp.seconds == 0 and stamp.nanos == 0 and field == "end_time"):
        violations.add(field, RejectReason.INVALID_RANGE, "must be after 1970-01-01T00:00:00Z")
        return None
    if stamp.seconds >= INT64_MAX // _NANOS_PER_SECOND:
        return INT64_MAX if field == "end_time" else INT64_MAX - 1
    return stamp.seconds * _NANOS_PER_SECOND + stamp.nanos


def _trade_id(text: str, field: str, violations: Violations) -> int:
    """A trade id bound (0 when empty)."""
    if not text:
        return 0
    problem = trade_id_problem(text)
    if problem:
        violations.add(field, RejectReason.INVALID_TRADE_ID, problem)
        return 0
    return int(text)


# --- page tokens --------------------------------------------------------------------------------


def _binding(kind: bytes, account_id: str, symbol: str, *bounds: int) -> bytes:
    """What a token of this query is bound to: the list, the account, the filters."""
    fields = (kind, account_id.encode(), symbol.encode(), *(str(bound).encode() for bound in bounds))
    return b"\0".join(fields)


def _digest(kind: bytes, binding: bytes, position: bytes) -> bytes:
    return hashlib.blake2b(
        binding + b"\0" + position, digest_size=_DIGEST_BYTES, person=b"backbone-page" + kind
    ).digest()


def _token(kind: bytes, binding: bytes, position: bytes) -> str:
    return _text(bytes((_TOKEN_VERSION,)) + kind + position + _digest(kind, binding, position))


def _text(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _token_position(token: str, kind: bytes, binding: bytes, violations: Violations) -> bytes | None:
    """The position a token of this query holds; None when there is no token or it is refused."""
    if not token:
        return None
    refused = "is not a token this query returned; start again without one"
    if len(token) > ids.MAX_PAGE_TOKEN_LENGTH or not token.isascii():
        violations.add("page_token", RejectReason.INVALID_PAGE_TOKEN, refused)
        return None
    try:  # base64url without padding, every character checked
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raw = b""
    head, position, digest = raw[:2], raw[2:-_DIGEST_BYTES], raw[-_DIGEST_BYTES:]
    if (
        len(raw) < 2 + _DIGEST_BYTES
        or _text(raw) != token  # one text per token: the last character's spare bits are zero
        or head != bytes((_TOKEN_VERSION,)) + kind
        or not hmac.compare_digest(digest, _digest(kind, binding, position))
    ):
        violations.add("page_token", RejectReason.INVALID_PAGE_TOKEN, refused)
        return None
    return position


def _order_position(position: bytes, violations: Violations) -> tuple[int, str]:
    created_ns = _ORDER_POSITION.unpack_from(position)[0] if len(position) > _ORDER_POSITION.size else -1
    order_id = position[_ORDER_POSITION.size :].decode("ascii", "replace")
    if created_ns < 0 or not ids.ORDER_ID.is_valid(order_id):
        violations.add("page_token", RejectReason.INVALID_PAGE_TOKEN, "does not name an order")
        return 0, ""
    return created_ns, order_id


def _fill_position(position: bytes, violations: Violations) -> tuple[int, int, str]:
    """(trade id, side, shard) of a fill position; the shard is "" when the token names none."""
    shard = position[_FILL_POSITION.size :].decode("ascii", "replace")
    if len(position) < _FILL_POSITION.size or (shard and not ids.SOURCE.is_valid(shard)):
        violations.add("page_token", RejectReason.INVALID_PAGE_TOKEN, "does not name a fill")
        return 0, common_pb2.SIDE_UNSPECIFIED, ""
    trade_id, side = _FILL_POSITION.unpack_from(position)
    if trade_id <= 0 or side not in _SIDES:
        violations.add("page_token", RejectReason.INVALID_PAGE_TOKEN, "does not name a fill")
        return 0, common_pb2.SIDE_UNSPECIFIED, ""
    return trade_id, side, shard
