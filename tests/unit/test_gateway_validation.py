"""Gateway edge checks: every field of the public requests tried with wrong values, plus the
caller checks (API key cache, admin key) and the reference-data cache."""

from __future__ import annotations

import grpc
import pytest

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.config import ConfigError, Settings
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from gateway.auth import ApiKeyAuthenticator, api_key_digest, check_admin
from gateway.fanout import ExecutionFanout
from gateway.instruments import AssetScales, InstrumentCache
from gateway.validation import (
    OrderDefaults,
    book_depth,
    build_instrument,
    deposit_amount,
    resolve_account,
    validate_account_id_field,
    validate_create_asset,
    validate_create_instrument,
    validate_deposit,
    validate_order_id,
    validate_replace,
    validate_submit_order,
)
from tests.instruments import btc_usd

INSTRUMENT = btc_usd(min_quantity="0.001", max_quantity="100")


def good_order(**changes: object) -> gateway_pb2.SubmitOrderRequest:
    fields: dict[str, object] = {
        "client_order_id": "my-order-1",
        "symbol": "BTC-USD",
        "side": common_pb2.SIDE_BUY,
        "price": "100.25",
        "quantity": "0.5",
    }
    fields.update(changes)
    return gateway_pb2.SubmitOrderRequest(**fields)  # type: ignore[arg-type]


def submit(
    request: gateway_pb2.SubmitOrderRequest, instrument: common_pb2.Instrument | None = INSTRUMENT
) -> object:
    return validate_submit_order(request, instrument, account_id="acc-1", order_id="o-1")


def refused(call: object) -> ServiceError:
    assert callable(call)
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value


# --- SubmitOrder -----------------------------------------------------------------------------


def test_a_good_order_becomes_a_scaled_limit_gtc_command() -> None:
    order = validate_submit_order(good_order(), INSTRUMENT, account_id="acc-1", order_id="o-1")
    assert order.order_id == "o-1"
    assert order.account_id == "acc-1"
    assert order.client_order_id == "my-order-1"
    assert order.symbol == "BTC-USD"
    assert order.side == common_pb2.SIDE_BUY
    assert order.type == common_pb2.ORDER_TYPE_LIMIT
    assert order.time_in_force == common_pb2.TIME_IN_FORCE_GTC
    assert order.price_ticks == 10025
    assert order.quantity_lots == 5000


def test_explicit_limit_and_gtc_are_accepted() -> None:
    order = submit(good_order(type=common_pb2.ORDER_TYPE_LIMIT, time_in_force=common_pb2.TIME_IN_FORCE_GTC))
    assert order.type == common_pb2.ORDER_TYPE_LIMIT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("price", "quantity", "ticks", "lots"),
    [
        ("0.01", "0.001", 1, 10),  # smallest price, smallest quantity
        ("1000000", "100", 100_000_000, 1_000_000),  # largest price, largest quantity
        ("1000000.00", "100.0000", 100_000_000, 1_000_000),  # trailing zeros are fine
        ("0.10", "0.0010", 10, 10),
    ],
)
def test_edges_of_the_grid_are_accepted(price: str, quantity: str, ticks: int, lots: int) -> None:
    order = submit(good_order(price=price, quantity=quantity))
    assert (order.price_ticks, order.quantity_lots) == (ticks, lots)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "client_order_id",
    [
        "",
        "x" * 65,
        "caf\u00e9",
        "tab\there",
        "new\nline",
        "\x7f",
        "\x00",
        "with space",
        " lead",
        "trail ",
        "my-order-1\n",
        "\u200bzero-width",
    ],
)
def test_bad_client_order_ids_are_refused(client_order_id: str) -> None:
    error = refused(lambda: submit(good_order(client_order_id=client_order_id)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_CLIENT_ORDER_ID"
    assert [v.field for v in error.violations] == ["client_order_id"]


@pytest.mark.parametrize("client_order_id", ["a", "x" * 64, "2024-05-01/fix:42#7", "~!@#$%^&*()_+{}|:<>?"])
def test_printable_client_order_ids_are_accepted(client_order_id: str) -> None:
    assert submit(good_order(client_order_id=client_order_id)).client_order_id == client_order_id  # type: ignore[attr-defined]


def test_missing_symbol_is_refused() -> None:
    error = refused(lambda: submit(good_order(symbol=""), None))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == ["symbol"]


@pytest.mark.parametrize("symbol", ["ETH-USD", "X" * 32])
def test_unknown_symbols_are_refused_with_unknown_symbol(symbol: str) -> None:
    error = refused(lambda: submit(good_order(symbol=symbol), None))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "UNKNOWN_SYMBOL"
    assert [v.field for v in error.violations] == ["symbol"]


@pytest.mark.parametrize("symbol", ["btc-usd", "BTC-USD ", "BTC-USD\n", " BTC-USD", "X" * 200, "BTC/USD"])
def test_malformed_symbols_are_refused_with_invalid_symbol(symbol: str) -> None:
    """Even when an instrument is at hand: a malformed symbol is never looked up or matched."""
    for instrument in (None, INSTRUMENT):
        error = refused(lambda instrument=instrument: submit(good_order(symbol=symbol), instrument))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "INVALID_SYMBOL"
        assert [v.field for v in error.violations] == ["symbol"]


def test_an_instrument_of_another_symbol_does_not_validate_the_order() -> None:
    error = refused(lambda: submit(good_order(symbol="ETH-USD"), INSTRUMENT))
    assert error.reason == "UNKNOWN_SYMBOL"


@pytest.mark.parametrize("side", [common_pb2.SIDE_UNSPECIFIED, 3, 99])
def test_bad_sides_are_refused(side: int) -> None:
    error = refused(lambda: submit(good_order(side=side)))
    assert error.reason == "INVALID_SIDE"
    assert [v.field for v in error.violations] == ["side"]


@pytest.mark.parametrize("order_type", [3, 7, 1000])
def test_unsupported_order_types_are_refused(order_type: int) -> None:
    error = refused(lambda: submit(good_order(type=order_type)))
    assert error.reason == "UNSUPPORTED_ORDER_TYPE"
    assert [v.field for v in error.violations] == ["type"]


@pytest.mark.parametrize("time_in_force", [5, 1000])
def test_unsupported_times_in_force_are_refused(time_in_force: int) -> None:
    error = refused(lambda: submit(good_order(time_in_force=time_in_force)))
    assert error.reason == "UNSUPPORTED_TIME_IN_FORCE"
    assert [v.field for v in error.violations] == ["time_in_force"]


MARKET = common_pb2.ORDER_TYPE_MARKET
IOC, FOK, DAY, GTC = (
    common_pb2.TIME_IN_FORCE_IOC,
    common_pb2.TIME_IN_FORCE_FOK,
    common_pb2.TIME_IN_FORCE_DAY,
    common_pb2.TIME_IN_FORCE_GTC,
)


@pytest.mark.parametrize("time_in_force", [GTC, IOC, FOK, DAY])
def test_a_limit_order_takes_every_time_in_force(time_in_force: int) -> None:
    order = validate_submit_order(
        good_order(time_in_force=time_in_force), INSTRUMENT, account_id="acc-1", order_id="o-1"
    )
    assert order.time_in_force == time_in_force


def test_a_market_order_without_time_in_force_is_ioc_with_its_price_as_protection() -> None:
    order = validate_submit_order(good_order(type=MARKET), INSTRUMENT, account_id="acc-1", order_id="o-1")
    assert (order.type, order.time_in_force, order.price_ticks) == (MARKET, IOC, 10025)
    assert order.quote_budget == 0
    fok = validate_submit_order(
        good_order(type=MARKET, time_in_force=FOK), INSTRUMENT, account_id="acc-1", order_id="o-1"
    )
    assert fok.time_in_force == FOK


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"type": MARKET, "price": ""}, "price", "MARKET_PROTECTION_REQUIRED"),
        ({"type": MARKET, "time_in_force": GTC}, "time_in_force", "MARKET_ORDER_CANNOT_REST"),
        ({"type": MARKET, "time_in_force": DAY}, "time_in_force", "MARKET_ORDER_CANNOT_REST"),
        ({"type": MARKET, "post_only": True}, "post_only", "MARKET_ORDER_CANNOT_REST"),
        ({"time_in_force": IOC, "post_only": True}, "post_only", "INVALID_ORDER"),
        ({"time_in_force": FOK, "post_only": True}, "post_only", "INVALID_ORDER"),
        ({"self_trade_prevention": 5}, "self_trade_prevention", "INVALID_ORDER"),
        ({"self_trade_prevention": -1}, "self_trade_prevention", "INVALID_ORDER"),
    ],
)
def test_wrong_order_terms_are_refused_naming_the_field(
    changes: dict[str, object], field: str, reason: str
) -> None:
    error = refused(lambda: submit(good_order(**changes)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == reason
    assert [v.field for v in error.violations] == [field]


@pytest.mark.parametrize("time_in_force", [GTC, DAY])
def test_post_only_takes_the_configured_mode(time_in_force: int) -> None:
    request = good_order(time_in_force=time_in_force, post_only=True)
    default = validate_submit_order(request, INSTRUMENT, account_id="a", order_id="o")
    assert default.post_only == common_pb2.POST_ONLY_REJECT
    reprice = OrderDefaults(post_only=common_pb2.POST_ONLY_REPRICE)
    order = validate_submit_order(request, INSTRUMENT, account_id="a", order_id="o", defaults=reprice)
    assert order.post_only == common_pb2.POST_ONLY_REPRICE
    plain = validate_submit_order(good_order(), INSTRUMENT, account_id="a", order_id="o", defaults=reprice)
    assert plain.post_only == common_pb2.POST_ONLY_UNSPECIFIED


def test_self_trade_prevention_unspecified_takes_the_configured_default() -> None:
    both = OrderDefaults(self_trade_prevention=common_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH)
    order = validate_submit_order(good_order(), INSTRUMENT, account_id="a", order_id="o", defaults=both)
    assert order.self_trade_prevention == common_pb2.SELF_TRADE_PREVENTION_CANCEL_BOTH
    explicit = good_order(self_trade_prevention=gateway_pb2.SELF_TRADE_PREVENTION_NONE)
    order = validate_submit_order(explicit, INSTRUMENT, account_id="a", order_id="o", defaults=both)
    assert order.self_trade_prevention == common_pb2.SELF_TRADE_PREVENTION_UNSPECIFIED
    resting = good_order(self_trade_prevention=gateway_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING)
    order = validate_submit_order(resting, INSTRUMENT, account_id="a", order_id="o")
    assert order.self_trade_prevention == common_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING


def test_order_defaults_come_from_the_settings() -> None:
    settings = Settings.from_env(
        {"BACKBONE_POST_ONLY_MODE": "Reprice", "BACKBONE_SELF_TRADE_PREVENTION": "cancel_incoming"}
    )
    assert OrderDefaults.of(settings) == OrderDefaults(
        common_pb2.POST_ONLY_REPRICE, common_pb2.SELF_TRADE_PREVENTION_CANCEL_INCOMING
    )
    assert OrderDefaults.of(Settings.from_env({})) == OrderDefaults()
    for name in ("BACKBONE_POST_ONLY_MODE", "BACKBONE_SELF_TRADE_PREVENTION"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "sometimes"})


@pytest.mark.parametrize(
    "price",
    [
        "",  # missing
        "abc",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "inf",
        " 100",
        "100 ",
        "1,5",
        "01",
        ".5",
        "5.",
        "0",
        "0.00",
        "100.001",  # off the 0.01 tick
        "1000000.01",  # above the largest price
        "99999999999999999999999999999",  # far above
        "100000000000000000000000000000",  # 10^29
        "1" + "0" * 400,  # huge
        "1.0000000000000000001",  # more than 18 places
        "100." + "0" * 100,  # many places
        "\u0661\u0662",  # non-ASCII digits
        "100.25\n",  # a trailing newline
        "\n100.25",
        "100.25\r\n",
        "100.25\x00",
        "\t100.25",
        "100\u00a0",  # no-break space
    ],
)
def test_bad_prices_are_refused(price: str) -> None:
    error = refused(lambda: submit(good_order(price=price)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PRICE"
    assert [v.field for v in error.violations] == ["price"]
    assert error.violations[0].description


@pytest.mark.parametrize(
    "quantity",
    [
        "",
        "x",
        "-0.5",
        "1e-3",
        "NaN",
        "Infinity",
        "0",
        "0.0000",
        "0.00001",  # off the 0.0001 lot
        "0.0009",  # below the smallest quantity 0.001
        "100.0001",  # above the largest quantity
        "123456789012345678901234567890",
        "0.5 ",
        "0.5\n",
        "0.5\x00",
        "0.5" + "0" * 30,
    ],
)
def test_bad_quantities_are_refused(quantity: str) -> None:
    error = refused(lambda: submit(good_order(quantity=quantity)))
    assert error.reason == "INVALID_QUANTITY"
    assert [v.field for v in error.violations] == ["quantity"]


def test_every_wrong_field_is_named_at_once() -> None:
    request = gateway_pb2.SubmitOrderRequest(
        client_order_id="",
        symbol="",
        side=common_pb2.SIDE_UNSPECIFIED,
        type=5,  # type: ignore[arg-type]
        time_in_force=9,  # type: ignore[arg-type]
        price="cheap",
        quantity="lots",
    )
    error = refused(lambda: submit(request, None))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == [
        "client_order_id",
        "symbol",
        "side",
        "type",
        "time_in_force",
        "price",
        "quantity",
    ]
    assert error.reason == "INVALID_CLIENT_ORDER_ID"
    for field in ("client_order_id", "symbol", "price", "quantity"):
        assert field in error.message


def test_an_unknown_symbol_still_reports_malformed_numbers() -> None:
    error = refused(lambda: submit(good_order(symbol="NOPE-USD", price="1e5"), None))
    assert [v.field for v in error.violations] == ["symbol", "price"]
    assert error.reason == "UNKNOWN_SYMBOL"


def test_the_error_becomes_a_status_with_bad_request_details() -> None:
    error = refused(lambda: submit(good_order(price="0.001")))
    status = error.to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(status.details) == 2  # ErrorInfo and BadRequest


# --- other public requests ---------------------------------------------------------------------


def test_account_scoping() -> None:
    assert resolve_account("", "acc-1") == "acc-1"
    assert resolve_account("acc-1", "acc-1") == "acc-1"
    error = refused(lambda: resolve_account("acc-2", "acc-1"))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "ACCOUNT_NOT_PERMITTED"


@pytest.mark.parametrize("account_id", ["acc-1\n", " acc-1", "not an id!", "a" * 65, "system:fees", "\x00"])
def test_a_malformed_account_to_act_on_is_invalid_not_forbidden(account_id: str) -> None:
    error = refused(lambda: resolve_account(account_id, "acc-1"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ACCOUNT_ID"
    assert [v.field for v in error.violations] == ["account_id"]


@pytest.mark.parametrize("order_id", ["", "x" * 65, "\u00e9t\u00e9", "abc\n", " abc", "a b", "\x00"])
def test_bad_order_ids_are_refused(order_id: str) -> None:
    error = refused(lambda: validate_order_id(order_id))
    assert error.reason == "INVALID_ORDER_ID"
    assert [v.field for v in error.violations] == ["order_id"]


def test_book_depth() -> None:
    assert book_depth(0) == 20
    assert book_depth(1) == 1
    assert book_depth(1000) == 1000
    for depth in (1001, 2**32 - 1):
        error = refused(lambda depth=depth: book_depth(depth))
        assert [v.field for v in error.violations] == ["depth"]
        assert error.reason == "INVALID_DEPTH"


# --- admin requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "scale", "field"),
    [
        ("", 2, "code"),
        ("usd", 2, "code"),
        ("TOOLONGASSET1", 2, "code"),
        ("US D", 2, "code"),
        ("USD\n", 2, "code"),
        (" USD", 2, "code"),
        ("USD\x00", 2, "code"),
        ("USD", 19, "scale"),
        ("USD", 2**32 - 1, "scale"),
    ],
)
def test_bad_assets_are_refused(code: str, scale: int, field: str) -> None:
    error = refused(lambda: validate_create_asset(gateway_pb2.CreateAssetRequest(code=code, scale=scale)))
    assert [v.field for v in error.violations] == [field]


def test_good_assets_pass() -> None:
    validate_create_asset(gateway_pb2.CreateAssetRequest(code="USD", scale=2))
    validate_create_asset(gateway_pb2.CreateAssetRequest(code="X1", scale=0))
    validate_create_asset(gateway_pb2.CreateAssetRequest(code="ETH", scale=18))


def instrument_request(**changes: object) -> gateway_pb2.CreateInstrumentRequest:
    fields: dict[str, object] = {
        "symbol": "BTC-USD",
        "base_asset": "BTC",
        "quote_asset": "USD",
        "tick_size": "0.01",
        "lot_size": "0.0001",
        "min_quantity": "0.001",
        "max_quantity": "100",
        "max_price": "1000000",
        "maker_fee_bps": 10,
        "taker_fee_bps": 20,
    }
    fields.update(changes)
    return gateway_pb2.CreateInstrumentRequest(**fields)  # type: ignore[arg-type]


def test_a_good_instrument_is_built_like_derive_instrument() -> None:
    request = instrument_request()
    built = build_instrument(request, validate_create_instrument(request), base_scale=8, quote_scale=6)
    assert built == INSTRUMENT


def test_min_quantity_defaults_to_one_lot() -> None:
    request = instrument_request(min_quantity="")
    built = build_instrument(request, validate_create_instrument(request), base_scale=8, quote_scale=6)
    assert built.min_quantity_lots == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"symbol": ""}, "symbol"),
        ({"symbol": "btc-usd"}, "symbol"),
        ({"symbol": "BTC_USD"}, "symbol"),
        ({"symbol": "-BTC"}, "symbol"),
        ({"symbol": "BTC-USD\n"}, "symbol"),
        ({"symbol": "BTC--USD"}, "symbol"),
        ({"symbol": "BTC/USD"}, "symbol"),
        ({"symbol": "A" * 33}, "symbol"),
        ({"base_asset": "BTC\n"}, "base_asset"),
        ({"base_asset": ""}, "base_asset"),
        ({"base_asset": "btc"}, "base_asset"),
        ({"quote_asset": "U$D"}, "quote_asset"),
        ({"quote_asset": "BTC"}, "quote_asset"),
        ({"tick_size": ""}, "tick_size"),
        ({"tick_size": "0"}, "tick_size"),
        ({"tick_size": "-0.01"}, "tick_size"),
        ({"tick_size": "1e-2"}, "tick_size"),
        ({"lot_size": ""}, "lot_size"),
        ({"lot_size": "0.0"}, "lot_size"),
        ({"lot_size": "abc"}, "lot_size"),
        ({"min_quantity": "0"}, "min_quantity"),
        ({"min_quantity": "0.00015"}, "min_quantity"),
        ({"max_quantity": ""}, "max_quantity"),
        ({"max_quantity": "100.00005"}, "max_quantity"),
        ({"max_price": ""}, "max_price"),
        ({"max_price": "1000000.005"}, "max_price"),
        ({"max_price": "1" + "0" * 29}, "max_price"),  # 10^29
        ({"max_quantity": "1" + "0" * 29}, "max_quantity"),
        ({"tick_size": "0.01\n"}, "tick_size"),
        ({"lot_size": " 0.0001"}, "lot_size"),
        ({"min_quantity": "0.001\t"}, "min_quantity"),
        ({"tick_size": "0." + "0" * 18 + "1"}, "tick_size"),  # 19 places
        ({"maker_fee_bps": 1001}, "maker_fee_bps"),
        ({"taker_fee_bps": 5000}, "taker_fee_bps"),
    ],
)
def test_bad_instrument_fields_are_refused(changes: dict[str, object], field: str) -> None:
    error = refused(lambda: validate_create_instrument(instrument_request(**changes)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in error.violations]


@pytest.mark.parametrize(
    ("changes", "base_scale", "quote_scale", "field"),
    [
        ({"lot_size": "0.000000001"}, 8, 6, "lot_size"),  # finer than BTC's 8 places
        ({"tick_size": "0.001"}, 8, 6, "tick_size"),  # tick x lot finer than USD's 6 places
        ({"min_quantity": "200"}, 8, 6, "max_quantity"),  # max below min
        ({"max_price": "9000000000000000000", "max_quantity": "1000000000"}, 8, 6, "max_price"),
    ],
)
def test_grids_that_do_not_fit_the_assets_name_the_field(
    changes: dict[str, object], base_scale: int, quote_scale: int, field: str
) -> None:
    request = instrument_request(**changes)
    fields = validate_create_instrument(request)
    error = refused(lambda: build_instrument(request, fields, base_scale=base_scale, quote_scale=quote_scale))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == [field]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # 10^36 lots: beyond 28 significant digits, where default-context Decimal arithmetic raises.
        (
            {"max_quantity": "1000000000000000000", "lot_size": "0.000000000000000001", "tick_size": "1"},
            "max_quantity",
        ),
        (
            {"max_price": "9999999999999999999", "tick_size": "0.000000000000000001", "lot_size": "1"},
            "max_price",
        ),
        (
            {
                "max_price": "9999999999999999999.999999999999999999",
                "tick_size": "0.000000000000000001",
                "lot_size": "1",
            },
            "max_price",
        ),
        ({"lot_size": "9999999999999999999", "max_quantity": "9999999999999999999"}, "lot_size"),
    ],
)
def test_the_largest_decimals_are_refused_as_too_large_not_as_a_crash(
    changes: dict[str, object], field: str
) -> None:
    request = instrument_request(**{"min_quantity": "", "max_quantity": "1", **changes})
    fields = validate_create_instrument(request)
    error = refused(lambda: build_instrument(request, fields, base_scale=18, quote_scale=18))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == [field]
    assert "64-bit" in error.message


@pytest.mark.parametrize("account_id", ["", "a" * 65, "has space", "system:fees", "\u00e9"])
def test_bad_account_ids_are_refused(account_id: str) -> None:
    error = refused(lambda: validate_account_id_field(account_id))
    assert [v.field for v in error.violations] == ["account_id"]


def deposit(**changes: object) -> gateway_pb2.DepositRequest:
    fields: dict[str, object] = {"deposit_id": "d-1", "account_id": "acc-1", "asset": "USD", "amount": "10.5"}
    fields.update(changes)
    return gateway_pb2.DepositRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"deposit_id": ""}, "deposit_id"),
        ({"deposit_id": "d" * 65}, "deposit_id"),
        ({"deposit_id": "d\n1"}, "deposit_id"),
        ({"account_id": ""}, "account_id"),
        ({"account_id": "a/b"}, "account_id"),
        ({"asset": ""}, "asset"),
        ({"asset": "usd"}, "asset"),
        ({"amount": ""}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": "ten"}, "amount"),
    ],
)
def test_bad_deposits_are_refused(changes: dict[str, object], field: str) -> None:
    error = refused(lambda: validate_deposit(deposit(**changes)))
    assert [v.field for v in error.violations] == [field]


def test_deposit_amounts_use_the_asset_scale() -> None:
    validate_deposit(deposit())
    assert deposit_amount("10.5", 2) == 1050
    assert deposit_amount("7", 0) == 7
    for text, scale in (("0", 2), ("0.00", 2), ("0.001", 2), ("1.5", 0), ("99999999999999999999", 2)):
        error = refused(lambda text=text, scale=scale: deposit_amount(text, scale))
        assert [v.field for v in error.violations] == ["amount"]


# --- callers -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Directory:
    """Stands in for settlement.AuthenticateApiKey: a dict of digests, counting look-ups."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.accounts = {api_key_digest(key): account for key, account in keys.items()}
        self.calls = 0

    async def __call__(self, digest: bytes) -> str | None:
        self.calls += 1
        return self.accounts.get(digest)


async def test_api_keys_map_to_accounts_and_are_cached_for_a_while() -> None:
    clock = FakeClock()
    directory = Directory({"bbk_good": "acc-1"})
    auth = ApiKeyAuthenticator(directory, ttl_seconds=30, clock=clock)
    assert await auth.account_of([("x-api-key", "bbk_good")]) == "acc-1"
    assert await auth.account_of((("x-request-id", "r"), ("x-api-key", "bbk_good"))) == "acc-1"
    assert directory.calls == 1
    clock.now += 31
    assert await auth.account_of([("x-api-key", "bbk_good")]) == "acc-1"
    assert directory.calls == 2


async def test_missing_and_unknown_api_keys_are_unauthenticated() -> None:
    clock = FakeClock()
    directory = Directory({"bbk_good": "acc-1"})
    auth = ApiKeyAuthenticator(directory, negative_ttl_seconds=5, clock=clock)
    for metadata in (None, [], [("x-api-key", "")], [("x-admin-key", "bbk_good")]):
        with pytest.raises(ServiceError) as caught:
            await auth.account_of(metadata)
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.reason == "MISSING_API_KEY"
    for _ in range(3):
        with pytest.raises(ServiceError) as caught:
            await auth.account_of([("x-api-key", "bbk_wrong")])
        assert caught.value.reason == "UNKNOWN_API_KEY"
    assert directory.calls == 1  # unknown digests are remembered briefly
    clock.now += 6
    with pytest.raises(ServiceError):
        await auth.account_of([("x-api-key", "bbk_wrong")])
    assert directory.calls == 2


async def test_the_api_key_cache_is_bounded() -> None:
    directory = Directory({f"key-{i}": f"acc-{i}" for i in range(10)})
    auth = ApiKeyAuthenticator(directory, max_entries=3)
    for i in range(10):
        assert await auth.account_of([("x-api-key", f"key-{i}")]) == f"acc-{i}"
    assert auth.cached == 3


def test_the_admin_key() -> None:
    check_admin([("x-admin-key", "s3cret")], "s3cret")
    cases = [
        ([("x-admin-key", "s3cret")], "", "ADMIN_DISABLED"),
        ([], "s3cret", "MISSING_ADMIN_KEY"),
        ([("x-api-key", "s3cret")], "s3cret", "MISSING_ADMIN_KEY"),
        ([("x-admin-key", "s3cre")], "s3cret", "INVALID_ADMIN_KEY"),
        ([("x-admin-key", "s3cret\u00e9")], "s3cret", "INVALID_ADMIN_KEY"),
    ]
    for metadata, configured, reason in cases:
        error = refused(lambda m=metadata, c=configured: check_admin(m, c))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
        assert error.reason == reason
    assert "BACKBONE_ADMIN_KEY" in refused(lambda: check_admin([], "")).message


# --- reference data ----------------------------------------------------------------------------


async def test_the_instrument_cache_refreshes_once_on_a_miss() -> None:
    clock = FakeClock()
    known = [INSTRUMENT]
    loads = 0

    async def load() -> list[common_pb2.Instrument]:
        nonlocal loads
        loads += 1
        return list(known)

    cache = InstrumentCache(load, min_refresh_interval_seconds=1.0, clock=clock)
    assert await cache.get("BTC-USD") == INSTRUMENT
    assert loads == 1
    assert await cache.get("BTC-USD") == INSTRUMENT
    assert loads == 1
    assert await cache.get("ETH-USD") is None  # refreshed less than a second ago
    assert loads == 1
    clock.now += 2
    eth = common_pb2.Instrument(symbol="ETH-USD", tick_size="0.01", lot_size="0.001")
    known.append(eth)
    assert await cache.get("ETH-USD") == eth
    assert loads == 2


async def test_asset_scales() -> None:
    async def load() -> list[tuple[str, int]]:
        return [("USD", 2), ("BTC", 8)]

    assets = AssetScales(load)
    assert await assets.scale_of("BTC") == 8
    assert await assets.scale_of("XYZ") is None
    assets.put("XYZ", 3)
    assert assets.peek("XYZ") == 3


# --- execution fan-out -------------------------------------------------------------------------


def report_of(account_id: str, trade_id: int) -> common_pb2.ExecutionReport:
    return common_pb2.ExecutionReport(
        order=common_pb2.Order(account_id=account_id, symbol="BTC-USD"), trade_id=trade_id
    )


async def test_reports_reach_only_their_accounts_subscribers() -> None:
    fanout = ExecutionFanout(lambda: None, max_queued_per_subscriber=10)
    alice, alice_too, bob = (fanout.subscribe_resuming(account) for account in ("alice", "alice", "bob"))
    fanout.dispatch(
        [report_of("alice", 1), report_of("bob", 2), report_of("carol", 3), report_of("alice", 4)]
    )
    assert [(await alice.get()).trade_id for _ in range(2)] == [1, 4]  # type: ignore[union-attr]
    assert [(await alice_too.get()).trade_id for _ in range(2)] == [1, 4]  # type: ignore[union-attr]
    assert (await bob.get()).trade_id == 2  # type: ignore[union-attr]
    assert bob.queued == 0
    bob.close()
    fanout.dispatch([report_of("bob", 5)])
    assert bob.queued == 0
    assert fanout.subscriber_count == 2


async def test_a_slow_subscriber_is_ended_not_waited_for() -> None:
    fanout = ExecutionFanout(lambda: None, max_queued_per_subscriber=3)
    slow, other = fanout.subscribe_resuming("alice"), fanout.subscribe_resuming("bob")
    fanout.dispatch([report_of("alice", n) for n in range(5)] + [report_of("bob", 9)])
    assert [(await slow.get()).trade_id for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    with pytest.raises(ServiceError) as caught:
        await slow.get()
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == "SLOW_CONSUMER"
    assert (await other.get()).trade_id == 9  # type: ignore[union-attr]


async def test_an_ended_subscription_answers_none_and_closing_fails_the_rest() -> None:
    fanout = ExecutionFanout(lambda: None)
    gone, waiting = fanout.subscribe_resuming("alice"), fanout.subscribe_resuming("bob")
    gone.end()
    assert await gone.get() is None
    assert fanout.subscriber_count == 1
    await fanout.close()
    with pytest.raises(ServiceError) as caught:
        await waiting.get()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


# --- quote budgets and replaces -----------------------------------------------------------------

MARKET = common_pb2.ORDER_TYPE_MARKET


def test_a_budget_only_market_buy_carries_its_budget_in_quote_minor_units() -> None:
    order = submit(good_order(type=MARKET, price="", quote_budget="250.000001"))
    assert isinstance(order, trading_pb2.NewOrder)
    assert (order.price_ticks, order.quote_budget) == (0, 250_000_001)
    both = submit(good_order(type=MARKET, price="101.00", quote_budget="250"))
    assert isinstance(both, trading_pb2.NewOrder)
    assert (both.price_ticks, both.quote_budget) == (10_100, 250_000_000)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"quote_budget": "10"}, "only a market buy"),
        ({"type": MARKET, "side": common_pb2.SIDE_SELL, "quote_budget": "10"}, "only a market buy"),
        ({"type": MARKET, "price": "", "quote_budget": "0.0000001"}, "minor unit"),
        ({"type": MARKET, "price": "", "quote_budget": "0"}, "greater than zero"),
        ({"type": MARKET, "price": "", "quote_budget": "-1"}, ""),
        ({"type": MARKET, "price": "", "quote_budget": "100000001"}, "above the largest budget"),
        ({"type": MARKET, "price": "", "quote_budget": "9" * 400}, ""),
    ],
)
def test_bad_quote_budgets_are_refused_naming_the_field(changes: dict[str, object], why: str) -> None:
    error = refused(lambda: submit(good_order(**changes)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == RejectReason.INVALID_QUOTE_BUDGET
    assert [v.field for v in error.violations] == ["quote_budget"]
    assert why in error.message


def resting_order(**fields: object) -> common_pb2.Order:
    values: dict[str, object] = {
        "order_id": "o-1",
        "symbol": "BTC-USD",
        "price_ticks": 10_025,
        "quantity_lots": 5000,
    }
    values.update(fields)
    return common_pb2.Order(**values)  # type: ignore[arg-type]


def test_a_replace_keeps_what_it_does_not_name() -> None:
    def asked(price: str, quantity: str) -> tuple[int, int]:
        request = gateway_pb2.ReplaceOrderRequest(order_id="o-1", price=price, quantity=quantity)
        return validate_replace(request, resting_order(), INSTRUMENT)

    assert asked("101.5", "") == (10_150, 5000)
    assert asked("", "0.75") == (10_025, 7500)
    assert asked("99", "1") == (9900, 10_000)


@pytest.mark.parametrize(
    ("price", "quantity", "fields", "reason"),
    [
        ("", "", ["price", "quantity"], RejectReason.REQUIRED),
        ("1.001", "", ["price"], RejectReason.INVALID_PRICE),
        ("0", "", ["price"], RejectReason.INVALID_PRICE),
        ("-1", "", ["price"], RejectReason.INVALID_PRICE),
        ("2000000", "", ["price"], RejectReason.INVALID_PRICE),
        ("", "0.00001", ["quantity"], RejectReason.INVALID_QUANTITY),
        ("", "101", ["quantity"], RejectReason.INVALID_QUANTITY),
        ("", "1e3", ["quantity"], RejectReason.INVALID_QUANTITY),
        ("1 ", "9" * 400, ["price", "quantity"], RejectReason.INVALID_PRICE),
    ],
)
def test_bad_replaces_are_refused_naming_the_fields(
    price: str, quantity: str, fields: list[str], reason: RejectReason
) -> None:
    request = gateway_pb2.ReplaceOrderRequest(order_id="o-1", price=price, quantity=quantity)
    error = refused(lambda: validate_replace(request, resting_order(), INSTRUMENT))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert [v.field for v in error.violations] == fields
