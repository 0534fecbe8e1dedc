"""ListOrders and ListFills requests checked by the gateway, and page tokens bound to their query."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.money import INT64_MAX
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from gateway.listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    fills_query,
    next_fills_token,
    next_orders_token,
    orders_query,
)

ORDER = common_pb2.Order(order_id="3f2b8c1d9e0a4b5c", created_ns=1_700_000_000_123_456_789)
FILL = trading_pb2.Fill(trade_id=42, side=common_pb2.SIDE_SELL)


def refusal(call: object) -> ServiceError:
    with pytest.raises(ServiceError) as raised:
        call()  # type: ignore[operator]
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return raised.value


def fields_of(error: ServiceError) -> dict[str, str]:
    return {v.field: v.description for v in error.violations}


def time(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def test_an_orders_token_resumes_after_the_last_order_of_its_query() -> None:
    request = gateway_pb2.ListOrdersRequest(symbol="BTC-USD", page_size=10)
    token = next_orders_token(orders_query(request, "acct-a"), ORDER)
    resumed = orders_query(gateway_pb2.ListOrdersRequest(symbol="BTC-USD", page_token=token), "acct-a")
    assert (resumed.request.after_created_ns, resumed.request.after_order_id) == (
        ORDER.created_ns,
        ORDER.order_id,
    )
    assert resumed.request.limit == DEFAULT_PAGE_SIZE and resumed.request.account_id == "acct-a"
    assert token.isascii() and len(token) < 100


def test_a_fills_token_resumes_after_the_last_fill_of_its_query() -> None:
    request = gateway_pb2.ListFillsRequest(start_time=time(5), start_trade_id="7", page_size=3)
    token = next_fills_token(fills_query(request, "acct-a"), FILL)
    request.page_token = token
    resumed = fills_query(request, "acct-a").request
    assert (resumed.after_trade_id, resumed.after_side) == (42, common_pb2.SIDE_SELL)
    assert (resumed.start_timestamp_ns, resumed.start_trade_id, resumed.limit) == (5_000_000_000, 7, 3)


@pytest.mark.parametrize(
    "other",
    [
        ("acct-b", gateway_pb2.ListFillsRequest()),  # another account
        ("acct-a", gateway_pb2.ListFillsRequest(symbol="BTC-USD")),  # another filter
        ("acct-a", gateway_pb2.ListFillsRequest(end_trade_id="9")),
        ("acct-a", gateway_pb2.ListFillsRequest(start_time=time(1))),
    ],
)
def test_a_token_of_another_query_is_refused(other: tuple[str, gateway_pb2.ListFillsRequest]) -> None:
    token = next_fills_token(fills_query(gateway_pb2.ListFillsRequest(), "acct-a"), FILL)
    account, request = other
    request.page_token = token
    error = refusal(lambda: fills_query(request, account))
    assert error.reason == RejectReason.INVALID_PAGE_TOKEN and list(fields_of(error)) == ["page_token"]
    # The other list's token too: an orders token is no fills token.
    orders_token = next_orders_token(orders_query(gateway_pb2.ListOrdersRequest(), "acct-a"), ORDER)
    refusal(lambda: fills_query(gateway_pb2.ListFillsRequest(page_token=orders_token), "acct-a"))


def test_every_altered_character_of_a_token_is_refused() -> None:
    query = orders_query(gateway_pb2.ListOrdersRequest(), "acct-a")
    token = next_orders_token(query, ORDER)
    for position in range(len(token)):
        for replacement in {"A", "z", "-", "_", "0"} - {token[position]}:
            spoiled = token[:position] + replacement + token[position + 1 :]
            error = refusal(lambda: orders_query(gateway_pb2.ListOrdersRequest(page_token=spoiled), "acct-a"))  # noqa: B023
            assert error.reason == RejectReason.INVALID_PAGE_TOKEN
    for spoiled in (token[:-1], token + "A", token + "=", "", "A" * 300, "é" * 8, token.replace("A", "+")):
        if spoiled and spoiled != token:
            refusal(lambda: orders_query(gateway_pb2.ListOrdersRequest(page_token=spoiled), "acct-a"))  # noqa: B023


def test_page_sizes_default_and_are_bounded() -> None:
    assert orders_query(gateway_pb2.ListOrdersRequest(), "a").request.limit == DEFAULT_PAGE_SIZE
    assert (
        orders_query(gateway_pb2.ListOrdersRequest(page_size=MAX_PAGE_SIZE), "a").request.limit
        == MAX_PAGE_SIZE
    )
    error = refusal(lambda: orders_query(gateway_pb2.ListOrdersRequest(page_size=MAX_PAGE_SIZE + 1), "a"))
    assert error.reason == RejectReason.INVALID_LIMIT and list(fields_of(error)) == ["page_size"]


def test_every_wrong_field_of_a_fills_request_is_named_together() -> None:
    request = gateway_pb2.ListFillsRequest(
        symbol="btc-usd",
        page_size=5000,
        start_time=time(10),
        end_time=time(10),
        start_trade_id="8",
        end_trade_id="8",
        min_trading_sequence=-1,
        page_token="nope",
    )
    error = refusal(lambda: fills_query(request, "acct-a"))
    assert set(fields_of(error)) == {
        "symbol", "page_size", "end_time", "end_trade_id", "min_trading_sequence", "page_token"
    }  # fmt: skip
    assert error.reason == RejectReason.INVALID_SYMBOL  # the first violation's


@pytest.mark.parametrize(
    ("field", "stamp"),
    [
        ("start_time", time(-1)),
        ("end_time", time(0)),
        ("end_time", time(-62_135_596_800)),
        ("start_time", time(5, -1)),
        ("start_time", time(5, 1_000_000_000)),
        ("end_time", time(253_402_300_800)),  # 10000-01-01
        ("end_time", time(10**15)),
    ],
)
def test_times_before_1970_or_outside_a_timestamp_are_refused(
    field: str, stamp: timestamp_pb2.Timestamp
) -> None:
    request = gateway_pb2.ListFillsRequest()
    getattr(request, field).CopyFrom(stamp)
    error = refusal(lambda: fills_query(request, "acct-a"))
    assert error.reason == RejectReason.INVALID_RANGE and list(fields_of(error)) == [field]


def test_times_past_int64_nanoseconds_keep_a_valid_range() -> None:
    far = gateway_pb2.ListFillsRequest(start_time=time(253_402_300_000), end_time=time(253_402_300_799))
    request = fills_query(far, "acct-a").request
    assert request.start_timestamp_ns < request.end_timestamp_ns == INT64_MAX
    exact = fills_query(gateway_pb2.ListFillsRequest(start_time=time(1, 5), end_time=time(2)), "a").request
    assert (exact.start_timestamp_ns, exact.end_timestamp_ns) == (1_000_000_005, 2_000_000_000)


@pytest.mark.parametrize("text", ["0", "-1", "1.0", "abc", str(2**63), "9" * 40, "\uff11", " 1", "1\n"])
def test_a_trade_id_bound_is_a_positive_whole_number(text: str) -> None:
    error = refusal(lambda: fills_query(gateway_pb2.ListFillsRequest(start_trade_id=text), "acct-a"))
    assert error.reason == RejectReason.INVALID_TRADE_ID and list(fields_of(error)) == ["start_trade_id"]
    assert (
        fills_query(gateway_pb2.ListFillsRequest(end_trade_id=str(INT64_MAX)), "a").request.end_trade_id
        == INT64_MAX
    )
