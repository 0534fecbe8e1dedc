"""Every public call answers wrong input with the right status and a readable message, and changes nothing.

Besides the hand-written cases, every string and decimal field of every call (SubmitOrder, its
quote_budget included, ReplaceOrder (unary and as a StreamOrders command), CancelOrder,
CancelAllOrders, GetOrder, GetBalances, GetOrderBook, StreamExecutions, ListOrders, ListFills,
CreateAsset, CreateInstrument, CreateAccount, Deposit, SetInstrumentStatus, ExpireDayOrders;
ListInstruments has no field) is tried with
hostile variants of a good value (control characters, a trailing newline, surrounding and inner
whitespace, look-alike characters, far too long) and every decimal and number field with overflow
(10^29, huge, many decimal places); page tokens are tried forged and spoiled, trade id bounds with
every text that is not a positive whole number:
each answers INVALID_ARGUMENT naming the field, nothing changes, and the gateway keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import FieldViolation, ServiceError
from gateway.listing import MAX_PAGE_SIZE
from settlement import audit as ledger_audit
from tests.conftest import System
from tests.id_cases import hostile_variants
from tests.integration.gateway_calls import (
    BUY,
    SELL,
    Gateway,
    balances,
    funded_account,
    invariants_hold,
    key,
    refused,
    setup_market,
    unique,
)
from trading import audit as journal_audit

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
# Shaped like the gateway's page tokens (base64url: version, kind, position, digest), made up.
FORGED_TOKEN = "AW8AAAAAAAAAATAxMjNhYmNkZWYwMTIzNDU2Nzg5YWJj"


def _time(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def token_variants() -> list[str]:
    """Page tokens no call gave: hostile variants of a token-shaped text, wrong alphabets, far too long."""
    variants = [v for v in hostile_variants(FORGED_TOKEN, ids.ORDER_ID) if v]
    return [*variants, FORGED_TOKEN[:-1], FORGED_TOKEN + "A", "not a token", "A" * 5000, "+/+/", "\u00e9" * 8]


def trade_id_variants() -> list[str]:
    """Texts that are not a trade id (a positive whole number up to 2^63-1)."""
    return [
        *(v for v in hostile_variants("12", ids.ORDER_ID) if v),
        "0", "-1", "+1", "1.0", "1e3", "0x10", "abc", str(2**63), "9" * 400, "\uff11", "\u0661",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gateway(system: System) -> Iterator[Gateway]:
    with grpc.insecure_channel(system.gateway) as channel:
        gw = Gateway(channel, system.admin_key)
        setup_market(gw, "BTC-USD", "BTC")
        yield gw


@pytest.fixture(scope="module")
def trader(gateway: Gateway) -> tuple[str, str]:
    return funded_account(gateway, {"USD": "500", "BTC": "1"})


@pytest.fixture(scope="module")
def resting(gateway: Gateway, trader: tuple[str, str]) -> str:
    """An open order of the trader (a small buy far below the market) for ReplaceOrder's cases."""
    request = gateway_pb2.SubmitOrderRequest(
        client_order_id=unique("resting"), symbol="BTC-USD", side=BUY, price="1.00", quantity="0.0001"
    )
    return str(gateway.public.SubmitOrder(request, metadata=key(trader[1])).order.order_id)


def public_cases(gw: Gateway, api_key: str) -> list[tuple[str, Callable[[], object], grpc.StatusCode]]:
    md = key(api_key)
    p = gw.public
    return [
        (
            "cancel without order id",
            lambda: p.CancelOrder(gateway_pb2.CancelOrderRequest(), metadata=md),
            INVALID,
        ),
        (
            "cancel unknown order",
            lambda: p.CancelOrder(gateway_pb2.CancelOrderRequest(order_id="nope"), metadata=md),
            grpc.StatusCode.NOT_FOUND,
        ),
        ("get order without id", lambda: p.GetOrder(gateway_pb2.GetOrderRequest(), metadata=md), INVALID),
        (
            "get order with a huge id",
            lambda: p.GetOrder(gateway_pb2.GetOrderRequest(order_id="x" * 10_000), metadata=md),
            INVALID,
        ),
        (
            "book of no symbol",
            lambda: p.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol=""), metadata=md),
            INVALID,
        ),
        (
            "book too deep",
            lambda: p.GetOrderBook(
                gateway_pb2.GetOrderBookRequest(symbol="BTC-USD", depth=5000), metadata=md
            ),
            INVALID,
        ),
        (
            "book of an unknown symbol",
            lambda: p.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol="ZZZ-USD"), metadata=md),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "balances of a malformed account id",
            lambda: p.GetBalances(gateway_pb2.GetBalancesRequest(account_id="not an id!"), metadata=md),
            INVALID,
        ),
        (
            "balances of another account",
            lambda: p.GetBalances(gateway_pb2.GetBalancesRequest(account_id="someone-else"), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "orders page too large",
            lambda: p.ListOrders(gateway_pb2.ListOrdersRequest(page_size=1001), metadata=md),
            INVALID,
        ),
        (
            "orders with a forged page token",
            lambda: p.ListOrders(gateway_pb2.ListOrdersRequest(page_token=FORGED_TOKEN), metadata=md),
            INVALID,
        ),
        (
            "orders of an unknown symbol",
            lambda: p.ListOrders(gateway_pb2.ListOrdersRequest(symbol="ZZZ-USD"), metadata=md),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "orders of another account",
            lambda: p.ListOrders(gateway_pb2.ListOrdersRequest(account_id="someone-else"), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "fills with an inverted time range",
            lambda: p.ListFills(
                gateway_pb2.ListFillsRequest(start_time=_time(2_000_000_000), end_time=_time(1_000_000_000)),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "fills in an empty time range",
            lambda: p.ListFills(
                gateway_pb2.ListFillsRequest(start_time=_time(1_000_000_000), end_time=_time(1_000_000_000)),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "fills with an inverted trade id range",
            lambda: p.ListFills(
                gateway_pb2.ListFillsRequest(start_trade_id="10", end_trade_id="3"), metadata=md
            ),
            INVALID,
        ),
        (
            "fills ending before 1970",
            lambda: p.ListFills(gateway_pb2.ListFillsRequest(end_time=_time(-5)), metadata=md),
            INVALID,
        ),
        (
            "fills from a time with negative nanos",
            lambda: p.ListFills(
                gateway_pb2.ListFillsRequest(start_time=timestamp_pb2.Timestamp(seconds=5, nanos=-1)),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "fills up to a time past the year 9999",
            lambda: p.ListFills(
                gateway_pb2.ListFillsRequest(end_time=timestamp_pb2.Timestamp(seconds=10**15)), metadata=md
            ),
            INVALID,
        ),
        (
            "fills of a negative sequence",
            lambda: p.ListFills(gateway_pb2.ListFillsRequest(min_trading_sequence=-1), metadata=md),
            INVALID,
        ),
        (
            "fills with a forged page token",
            lambda: p.ListFills(gateway_pb2.ListFillsRequest(page_token=FORGED_TOKEN), metadata=md),
            INVALID,
        ),
        (
            "fills of another account",
            lambda: p.ListFills(gateway_pb2.ListFillsRequest(account_id="someone-else"), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "executions of another account",
            lambda: next(
                iter(p.StreamExecutions(gateway_pb2.StreamExecutionsRequest(account_id="other"), metadata=md))
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]


def admin_cases(gw: Gateway, account_id: str) -> list[tuple[str, Callable[[], object], grpc.StatusCode]]:
    md = gw.admin_metadata()
    a = gw.admin
    instrument: dict[str, Any] = dict(
        symbol="ETH-USD", base_asset="BTC", quote_asset="USD", tick_size="0.01", lot_size="0.0001",
        max_quantity="10", max_price="1000",
    )  # fmt: skip
    return [
        (
            "asset code lower case",
            lambda: a.CreateAsset(gateway_pb2.CreateAssetRequest(code="usd", scale=2), metadata=md),
            INVALID,
        ),
        (
            "asset scale too large",
            lambda: a.CreateAsset(gateway_pb2.CreateAssetRequest(code="XYZ", scale=19), metadata=md),
            INVALID,
        ),
        (
            "asset redefined with another scale",
            lambda: a.CreateAsset(gateway_pb2.CreateAssetRequest(code="USD", scale=2), metadata=md),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            "instrument tick too fine for the quote asset",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**{**instrument, "tick_size": "0.0000001"}), metadata=md
            ),
            INVALID,
        ),
        (
            "instrument with a garbage lot",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**{**instrument, "lot_size": "abc"}), metadata=md
            ),
            INVALID,
        ),
        (
            "instrument over an unknown asset",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**{**instrument, "base_asset": "NOPE"}), metadata=md
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "instrument fee too high",
            lambda: a.CreateInstrument(
                gateway_pb2.CreateInstrumentRequest(**instrument, taker_fee_bps=5000), metadata=md
            ),
            INVALID,
        ),
        (
            "account id with spaces",
            lambda: a.CreateAccount(gateway_pb2.CreateAccountRequest(account_id="bad id"), metadata=md),
            INVALID,
        ),
        (
            "account that exists",
            lambda: a.CreateAccount(gateway_pb2.CreateAccountRequest(account_id=account_id), metadata=md),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            "negative deposit",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id="d-neg", account_id=account_id, asset="USD", amount="-5"
                ),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "deposit finer than the asset",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id="d-fine", account_id=account_id, asset="USD", amount="0.0000001"
                ),
                metadata=md,
            ),
            INVALID,
        ),
        (
            "deposit of an unknown asset",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(
                    deposit_id="d-unk", account_id=account_id, asset="DOGE", amount="1"
                ),
                metadata=md,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "deposit to an unknown account",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(deposit_id="d-acc", account_id="ghost", asset="USD", amount="1"),
                metadata=md,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "deposit without an id",
            lambda: a.Deposit(
                gateway_pb2.DepositRequest(account_id=account_id, asset="USD", amount="1"), metadata=md
            ),
            INVALID,
        ),
    ]


def test_every_public_and_admin_call_refuses_bad_input_and_changes_nothing(
    gateway: Gateway, trader: tuple[str, str], system: System
) -> None:
    account_id, api_key = trader
    before = balances(gateway, api_key)
    instruments_before = gateway.public.ListInstruments(
        gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key)
    )
    failures = []
    for name, call, expected in public_cases(gateway, api_key) + admin_cases(gateway, account_id):
        error = refused(call)
        if error.code != expected or not error.message or not error.reason:
            failures.append(f"{name}: expected {expected.name}, got {error}")
    assert failures == [], "\n".join(failures)
    assert balances(gateway, api_key) == before
    after = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=key(api_key))
    assert after == instruments_before
    invariants_hold(system.database_url, system.redis_url)


# --- every field with hostile values ----------------------------------------------------------------


# A good decimal turned bad: each is malformed or out of bounds, never a valid number in disguise.
def decimal_variants(good: str) -> list[str]:
    """Hostile and overflowing variants of the decimal text `good` (such as "1.00")."""
    assert "." in good
    variants = []
    for char in ("\n", "\r", "\t", " ", "\x00", "\x1b", "\x7f", "\u00a0", "\u2028", "\u200b", "\ufeff"):
        variants += [good + char, char + good, good[:1] + char + good[1:]]
    variants += [good + "\r\n", " " + good + " ", good + "\n\n"]
    variants += [
        "1" + "0" * 29,  # 10^29
        "1" + "0" * 29 + ".5",
        "1" + "0" * ids.MAX_DECIMAL_INTEGER_DIGITS,  # one digit too many
        "9" * 400,  # huge
        "9" * 100_000,
        good + "0" * 30,  # many decimal places
        "0." + "0" * 40 + "1",
        "1e29",
        "1E+29",
        "-" + good,
        "+" + good,
        "NaN",
        "Infinity",
        "\uff11.00",  # FULLWIDTH DIGIT ONE
        "\u0661.00",  # ARABIC-INDIC DIGIT ONE
        "0x10",
        "1_000.00",
    ]
    return variants


def id_variants(good: str, rule: ids.IdRule, *, empty_is_valid: bool = False) -> list[str]:
    variants = hostile_variants(good, rule)
    return [v for v in variants if v or not empty_is_valid]


# Well-formed but out of range wherever it is sent: too large for the instrument, or for int64 amounts.
LARGEST_DECIMALS = ("9" * ids.MAX_DECIMAL_INTEGER_DIGITS, "9" * ids.MAX_DECIMAL_INTEGER_DIGITS + ".5")
NUMBER_VARIANTS = (ids.MAX_FEE_BPS + 1, 2**31, 2**32 - 1)


@dataclass(frozen=True)
class FieldCase:
    """One field of one call, sent with each of `values` in an otherwise good request."""

    call: str
    field: str
    values: tuple[object, ...]
    send: Callable[..., object]  # send(**{field: value}) makes the call

    def __call__(self, value: object) -> object:
        return self.send(**{self.field: value})


def _unary(method: Any, message: Any, metadata: Any, **good: object) -> Callable[..., object]:
    """A call of `method` with a `message` built from the good fields, some of them replaced."""
    return lambda **changes: method(message(**{**good, **changes}), metadata=metadata)


def _first_response(method: Any, message: Any, metadata: Any) -> Callable[..., object]:
    """A server-streaming call whose first response (or refusal) is awaited."""
    return lambda **fields: next(iter(method(message(**fields), metadata=metadata)))


class CommandRefused(grpc.RpcError):
    """A StreamOrders command's refusal (its result), shaped as the failed unary call would be."""

    def __init__(self, result: gateway_pb2.OrderCommandResult) -> None:
        super().__init__(result.message)
        status = next(code for code in grpc.StatusCode if code.value[0] == result.code)
        violations = (FieldViolation(result.field, result.message),) if result.field else ()
        reason = RejectReason.from_number(result.reason)
        self._error = ServiceError(status, reason, result.message, violations)

    def code(self) -> grpc.StatusCode:
        return self._error.code

    def details(self) -> str:
        return self._error.message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._error.trailing_metadata()


def _stream_command(
    method: Any, metadata: Any, kind: str, message: Any, **good: object
) -> Callable[..., object]:
    """One StreamOrders command built from the good fields, some replaced (or the tag, with
    `tag=`); its result is returned, or raised as CommandRefused when it is a refusal."""

    def send(**changes: object) -> object:
        tag = changes.pop("tag", "")
        command = gateway_pb2.OrderCommand(tag=tag, **{kind: message(**{**good, **changes})})  # type: ignore[arg-type]
        for response in method(
            iter([gateway_pb2.StreamOrdersRequest(commands=[command])]), metadata=metadata
        ):
            for result in response.results:
                if result.code != grpc.StatusCode.OK.value[0]:
                    raise CommandRefused(result)
                return result
        raise AssertionError("the stream ended without answering the command")

    return send


def _market_data(method: Any, metadata: Any) -> Callable[..., object]:
    """StreamMarketData of BTC-USD at depth 5 with one field replaced ("symbols[0]": the one
    symbol); its first response (or refusal) is awaited."""

    def send(**changes: object) -> object:
        fields: dict[str, object] = {"symbols": ["BTC-USD"], "depth": 5}
        for name, value in changes.items():
            fields["symbols" if name == "symbols[0]" else name] = [value] if name == "symbols[0]" else value
        return next(iter(method(gateway_pb2.StreamMarketDataRequest(**fields), metadata=metadata)))  # type: ignore[arg-type]

    return send


def every_field(gw: Gateway, account_id: str, api_key: str, resting: str) -> list[FieldCase]:
    md, admin = key(api_key), gw.admin_metadata()
    p, a = gw.public, gw.admin
    # Good requests (that nothing must let through once a field is spoiled): a small buy far below
    # the market the trader can afford, an instrument over known assets, a deposit to the trader.
    submit = _unary(
        p.SubmitOrder, gateway_pb2.SubmitOrderRequest, md,
        client_order_id=unique("hostile"), symbol="BTC-USD", side=BUY, price="1.00", quantity="0.0001",
    )  # fmt: skip
    # A budget-only market buy: every spoiled budget is refused before anything is reserved.
    budget_buy = _unary(
        p.SubmitOrder, gateway_pb2.SubmitOrderRequest, md,
        client_order_id=unique("hostile"), symbol="BTC-USD", side=BUY, type=MARKET, quantity="0.0001",
        quote_budget="1.00",
    )  # fmt: skip
    # A replace of the trader's resting order to what it already is (a no-op, never sent as is).
    replace = _unary(
        p.ReplaceOrder, gateway_pb2.ReplaceOrderRequest, md, order_id=resting, price="1.00", quantity="0.0001"
    )
    cancel = _unary(p.CancelOrder, gateway_pb2.CancelOrderRequest, md, order_id="0123abcd")
    get_order = _unary(p.GetOrder, gateway_pb2.GetOrderRequest, md, order_id="0123abcd")
    get_balances = _unary(p.GetBalances, gateway_pb2.GetBalancesRequest, md)
    executions = _first_response(p.StreamExecutions, gateway_pb2.StreamExecutionsRequest, md)
    book = _unary(p.GetOrderBook, gateway_pb2.GetOrderBookRequest, md, symbol="BTC-USD")
    market_data = _market_data(p.StreamMarketData, md)
    list_orders = _unary(p.ListOrders, gateway_pb2.ListOrdersRequest, md, symbol="BTC-USD", page_size=10)
    list_fills = _unary(
        p.ListFills, gateway_pb2.ListFillsRequest, md, symbol="BTC-USD", start_trade_id="1", end_trade_id="99"
    )
    list_symbols = (*id_variants("BTC-USD", ids.SYMBOL, empty_is_valid=True),)
    page_sizes = (MAX_PAGE_SIZE + 1, *NUMBER_VARIANTS)
    create_asset = _unary(a.CreateAsset, gateway_pb2.CreateAssetRequest, admin, code="HOSTILE", scale=2)
    create_instrument = _unary(
        a.CreateInstrument, gateway_pb2.CreateInstrumentRequest, admin,
        symbol="HOSTILE-USD", base_asset="BTC", quote_asset="USD", tick_size="0.01", lot_size="0.0001",
        min_quantity="0.0001", max_quantity="10.0", max_price="1000.00",
    )  # fmt: skip
    create_account = _unary(a.CreateAccount, gateway_pb2.CreateAccountRequest, admin)
    deposit = _unary(
        a.Deposit, gateway_pb2.DepositRequest, admin,
        deposit_id=unique("hostile"), account_id=account_id, asset="USD", amount="1.00",
    )  # fmt: skip

    stream_submit = _stream_command(
        p.StreamOrders, md, "submit", gateway_pb2.SubmitOrderRequest,
        client_order_id=unique("hostile"), symbol="BTC-USD", side=BUY, price="1.00", quantity="0.0001",
    )  # fmt: skip
    stream_cancel = _stream_command(
        p.StreamOrders, md, "cancel", gateway_pb2.CancelOrderRequest, order_id="0123abcd"
    )
    stream_budget_buy = _stream_command(
        p.StreamOrders, md, "submit", gateway_pb2.SubmitOrderRequest,
        client_order_id=unique("hostile"), symbol="BTC-USD", side=BUY, type=MARKET, quantity="0.0001",
        quote_budget="1.00",
    )  # fmt: skip
    stream_replace = _stream_command(
        p.StreamOrders, md, "replace", gateway_pb2.ReplaceOrderRequest,
        order_id=resting, price="1.00", quantity="0.0001",
    )  # fmt: skip
    # Off the quote asset's grid (USD has 6 decimals), or above the largest order's cost.
    budgets = (*decimal_variants("1.00"), *LARGEST_DECIMALS, "1.0000001", "1000000000.000001")
    # Good mass cancels and controls change nothing here: the trader has no open order, BTC-USD
    # trades already, and no DAY order is open.
    cancel_all = _unary(p.CancelAllOrders, gateway_pb2.CancelAllOrdersRequest, md, symbol="BTC-USD")
    stream_mass_cancel = _stream_command(
        p.StreamOrders, md, "mass_cancel", gateway_pb2.CancelAllOrdersRequest, symbol="BTC-USD"
    )
    set_status = _unary(
        a.SetInstrumentStatus, gateway_pb2.SetInstrumentStatusRequest, admin,
        symbol="BTC-USD", status=common_pb2.INSTRUMENT_STATUS_TRADING,
    )  # fmt: skip
    expire = _unary(a.ExpireDayOrders, gateway_pb2.ExpireDayOrdersRequest, admin, symbol="BTC-USD")
    own = (*id_variants(account_id, ids.ACCOUNT_ID, empty_is_valid=True),)
    order_ids = (*id_variants("0123456789abcdef0123456789abcdef", ids.ORDER_ID),)
    symbols = (*id_variants("BTC-USD", ids.SYMBOL),)
    # Enum values no order term has (proto3 enums are open: any int32 arrives).
    order_types, times_in_force, stps = (3, -1, 2**31 - 1), (5, -1, 2**31 - 1), (5, -1, 2**31 - 1)
    cases = [
        FieldCase("SubmitOrder", "account_id", own, submit),
        FieldCase("SubmitOrder", "client_order_id", (*id_variants("c-1", ids.CLIENT_ORDER_ID),), submit),
        FieldCase("SubmitOrder", "symbol", symbols, submit),
        FieldCase("SubmitOrder", "price", (*decimal_variants("1.00"), *LARGEST_DECIMALS), submit),
        FieldCase("SubmitOrder", "quantity", (*decimal_variants("0.0001"), *LARGEST_DECIMALS), submit),
        FieldCase("SubmitOrder", "type", order_types, submit),
        FieldCase("SubmitOrder", "time_in_force", times_in_force, submit),
        FieldCase("SubmitOrder", "self_trade_prevention", stps, submit),
        FieldCase("SubmitOrder", "quote_budget", budgets, budget_buy),
        FieldCase("StreamOrders", "quote_budget", budgets, stream_budget_buy),
        FieldCase("ReplaceOrder", "account_id", own, replace),
        FieldCase("ReplaceOrder", "order_id", order_ids, replace),
        FieldCase("ReplaceOrder", "price", (*decimal_variants("1.00"), *LARGEST_DECIMALS), replace),
        FieldCase("ReplaceOrder", "quantity", (*decimal_variants("0.0001"), *LARGEST_DECIMALS), replace),
        FieldCase("StreamOrders", "account_id", own, stream_replace),
        FieldCase("StreamOrders", "order_id", order_ids, stream_replace),
        FieldCase("StreamOrders", "price", (*decimal_variants("1.00"), *LARGEST_DECIMALS), stream_replace),
        FieldCase("StreamOrders", "quantity", (*decimal_variants("0.0001"), *LARGEST_DECIMALS),
                  stream_replace),
        FieldCase("StreamOrders", "account_id", own, stream_submit),
        FieldCase("StreamOrders", "client_order_id", (*id_variants("c-1", ids.CLIENT_ORDER_ID),),
                  stream_submit),
        FieldCase("StreamOrders", "symbol", symbols, stream_submit),
        FieldCase("StreamOrders", "price", (*decimal_variants("1.00"), *LARGEST_DECIMALS), stream_submit),
        FieldCase("StreamOrders", "quantity", (*decimal_variants("0.0001"), *LARGEST_DECIMALS),
                  stream_submit),
        FieldCase("StreamOrders", "type", order_types, stream_submit),
        FieldCase("StreamOrders", "time_in_force", times_in_force, stream_submit),
        FieldCase("StreamOrders", "self_trade_prevention", stps, stream_submit),
        FieldCase("StreamOrders", "tag", (*id_variants("tag-1", ids.COMMAND_TAG, empty_is_valid=True),),
                  stream_submit),
        FieldCase("StreamOrders", "account_id", own, stream_cancel),
        FieldCase("StreamOrders", "order_id", order_ids, stream_cancel),
        FieldCase("StreamOrders", "account_id", own, stream_mass_cancel),
        FieldCase("StreamOrders", "symbol", list_symbols, stream_mass_cancel),
        FieldCase("CancelAllOrders", "account_id", own, cancel_all),
        FieldCase("CancelAllOrders", "symbol", list_symbols, cancel_all),
        FieldCase("SetInstrumentStatus", "symbol", symbols, set_status),
        FieldCase("SetInstrumentStatus", "status", (0, 4, -1, 2**31 - 1), set_status),
        FieldCase("ExpireDayOrders", "symbol", list_symbols, expire),
        FieldCase("CancelOrder", "account_id", own, cancel),
        FieldCase("CancelOrder", "order_id", order_ids, cancel),
        FieldCase("GetOrder", "account_id", own, get_order),
        FieldCase("GetOrder", "order_id", order_ids, get_order),
        FieldCase("GetBalances", "account_id", own, get_balances),
        FieldCase("StreamExecutions", "account_id", own, executions),
        FieldCase("StreamExecutions", "from_sequence", (-1, -(2**63)), executions),
        FieldCase("GetOrderBook", "symbol", symbols, book),
        FieldCase("GetOrderBook", "depth", (ids.MAX_BOOK_DEPTH + 1, *NUMBER_VARIANTS), book),
        FieldCase("StreamMarketData", "symbols[0]", symbols, market_data),
        FieldCase("StreamMarketData", "depth", (ids.MARKET_DATA_MAX_DEPTH + 1, *NUMBER_VARIANTS),
                  market_data),
        FieldCase("ListOrders", "account_id", own, list_orders),
        FieldCase("ListOrders", "symbol", list_symbols, list_orders),
        FieldCase("ListOrders", "page_size", page_sizes, list_orders),
        FieldCase("ListOrders", "page_token", (*token_variants(),), list_orders),
        FieldCase("ListFills", "account_id", own, list_fills),
        FieldCase("ListFills", "symbol", list_symbols, list_fills),
        FieldCase("ListFills", "page_size", page_sizes, list_fills),
        FieldCase("ListFills", "page_token", (*token_variants(),), list_fills),
        FieldCase("ListFills", "start_trade_id", (*trade_id_variants(),), list_fills),
        FieldCase("ListFills", "end_trade_id", (*trade_id_variants(),), list_fills),
        FieldCase("ListFills", "min_trading_sequence", (-1, -(2**63)), list_fills),
        FieldCase("CreateAsset", "code", (*id_variants("HOSTILE", ids.ASSET_CODE),), create_asset),
        FieldCase("CreateAsset", "scale", (ids.MAX_SCALE + 1, *NUMBER_VARIANTS), create_asset),
        FieldCase("CreateInstrument", "symbol", (*id_variants("HOST-USD", ids.SYMBOL),), create_instrument),
        FieldCase("CreateAccount", "account_id", (*id_variants("h-1", ids.ACCOUNT_ID, empty_is_valid=True),),
                  create_account),
        FieldCase("Deposit", "deposit_id", (*id_variants("deposit-1", ids.DEPOSIT_ID),), deposit),
        FieldCase("Deposit", "account_id", (*id_variants(account_id, ids.ACCOUNT_ID),), deposit),
        FieldCase("Deposit", "asset", (*id_variants("USD", ids.ASSET_CODE),), deposit),
        FieldCase("Deposit", "amount", (*decimal_variants("1.00"), *LARGEST_DECIMALS), deposit),
    ]  # fmt: skip
    for field, good in (("base_asset", "BTC"), ("quote_asset", "USD")):
        cases.append(
            FieldCase("CreateInstrument", field, (*id_variants(good, ids.ASSET_CODE),), create_instrument)
        )
    for field, good in (
        ("tick_size", "0.01"),
        ("lot_size", "0.0001"),
        ("min_quantity", "0.0001"),
        ("max_quantity", "10.0"),
        ("max_price", "1000.00"),
    ):
        # 19 nines: a well-formed limit whose largest order overflows int64 amounts.
        largest = LARGEST_DECIMALS[:1] if field in ("max_quantity", "max_price") else ()
        cases.append(
            FieldCase("CreateInstrument", field, (*decimal_variants(good), *largest), create_instrument)
        )
    for field in ("maker_fee_bps", "taker_fee_bps"):
        cases.append(FieldCase("CreateInstrument", field, NUMBER_VARIANTS, create_instrument))
    return cases


def stored_state(system: System) -> tuple[object, ...]:
    """What a refused call must not change: ledger entries and balances, every trading journal."""
    with psycopg.connect(system.database_url) as connection:
        journals = {
            shard: sum(1 for _ in journal_audit.records(connection, shard))
            for shard in journal_audit.shards(connection)
        }
        return (
            ledger_audit.entry_count(connection),
            ledger_audit.customer_balances(connection),
            journals,
        )


def test_every_field_of_every_call_refuses_hostile_values_naming_the_field(
    gateway: Gateway, trader: tuple[str, str], resting: str, system: System
) -> None:
    account_id, api_key = trader
    md = key(api_key)
    before = (balances(gateway, api_key), stored_state(system))
    instruments_before = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=md)
    cases = every_field(gateway, account_id, api_key, resting)
    assert {case.call for case in cases} == {
        "SubmitOrder", "ReplaceOrder", "CancelOrder", "GetOrder", "GetBalances", "StreamExecutions",
        "GetOrderBook",
        "StreamOrders", "StreamMarketData", "ListOrders", "ListFills", "CancelAllOrders",
        "CreateAsset", "CreateInstrument", "CreateAccount", "Deposit", "SetInstrumentStatus",
        "ExpireDayOrders",
    }  # fmt: skip
    failures = []
    tried = 0
    for case in cases:
        for value in case.values:
            tried += 1
            try:
                error = refused(partial(case, value))
            except AssertionError:
                failures.append(f"{case.call}.{case.field}={value!r:.60}: accepted")
                continue
            named = [violation.field for violation in error.violations]
            if error.code != INVALID or case.field not in named or not error.message or not error.reason:
                failures.append(
                    f"{case.call}.{case.field}={value!r:.60}: {error.code.name} {error.reason} "
                    f"fields {named}: {error.message[:120]}"
                )
    assert failures == [], f"{len(failures)} of {tried} refused wrongly:\n" + "\n".join(failures[:60])
    assert tried > 1000
    # Nothing changed, and the gateway still serves.
    assert (balances(gateway, api_key), stored_state(system)) == before
    after = gateway.public.ListInstruments(gateway_pb2.ListInstrumentsRequest(), metadata=md)
    assert after == instruments_before
    book = gateway.public.GetOrderBook(gateway_pb2.GetOrderBookRequest(symbol="BTC-USD"), metadata=md)
    assert book.symbol == "BTC-USD"
    invariants_hold(system.database_url, system.redis_url)


MARKET, GTC, IOC, FOK, DAY = (
    common_pb2.ORDER_TYPE_MARKET,
    common_pb2.TIME_IN_FORCE_GTC,
    common_pb2.TIME_IN_FORCE_IOC,
    common_pb2.TIME_IN_FORCE_FOK,
    common_pb2.TIME_IN_FORCE_DAY,
)
# Order terms that do not go together: (the fields sent, the field named, the reason).
WRONG_COMBINATIONS: list[tuple[dict[str, object], str, RejectReason]] = [
    ({"type": MARKET, "price": ""}, "price", RejectReason.MARKET_PROTECTION_REQUIRED),
    ({"type": MARKET, "time_in_force": GTC}, "time_in_force", RejectReason.MARKET_ORDER_CANNOT_REST),
    ({"type": MARKET, "time_in_force": DAY}, "time_in_force", RejectReason.MARKET_ORDER_CANNOT_REST),
    ({"type": MARKET, "post_only": True}, "post_only", RejectReason.MARKET_ORDER_CANNOT_REST),
    (
        {"type": MARKET, "time_in_force": FOK, "post_only": True},
        "post_only",
        RejectReason.MARKET_ORDER_CANNOT_REST,
    ),
    ({"time_in_force": IOC, "post_only": True}, "post_only", RejectReason.INVALID_ORDER),
    ({"time_in_force": FOK, "post_only": True}, "post_only", RejectReason.INVALID_ORDER),
    ({"quote_budget": "1.00"}, "quote_budget", RejectReason.INVALID_QUOTE_BUDGET),
    (
        {"type": MARKET, "side": SELL, "quote_budget": "1.00"},
        "quote_budget",
        RejectReason.INVALID_QUOTE_BUDGET,
    ),
    (
        {"type": MARKET, "price": "", "quote_budget": "0.0000001"},
        "quote_budget",
        RejectReason.INVALID_QUOTE_BUDGET,
    ),
]


def test_every_wrong_combination_of_order_terms_is_refused_naming_the_field(
    gateway: Gateway, trader: tuple[str, str], resting: str, system: System
) -> None:
    """Through SubmitOrder and StreamOrders alike, before risk reserves anything."""
    account_id, api_key = trader
    before = (balances(gateway, api_key), stored_state(system))
    senders = {
        case.call: case.send
        for case in every_field(gateway, account_id, api_key, resting)
        if case.field == "price" and case.call in ("SubmitOrder", "StreamOrders")
    }
    assert set(senders) == {"SubmitOrder", "StreamOrders"}
    failures = []
    for call, send in senders.items():
        for changes, field, reason in WRONG_COMBINATIONS:
            error = refused(partial(send, **changes))
            named = [violation.field for violation in error.violations]
            if (error.code, error.reason, named) != (INVALID, reason, [field]):
                failures.append(f"{call} {changes}: {error.code.name} {error.reason} {named}")
    assert failures == [], "\n".join(failures)
    assert (balances(gateway, api_key), stored_state(system)) == before
