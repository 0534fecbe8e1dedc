import datetime

from backbone.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SelfTradePrevention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELF_TRADE_PREVENTION_UNSPECIFIED: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_NONE: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_RESTING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_INCOMING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_BOTH: _ClassVar[SelfTradePrevention]
SELF_TRADE_PREVENTION_UNSPECIFIED: SelfTradePrevention
SELF_TRADE_PREVENTION_NONE: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_RESTING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_INCOMING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_BOTH: SelfTradePrevention

class Order(_message.Message):
    __slots__ = ("order_id", "client_order_id", "account_id", "symbol", "side", "type", "time_in_force", "price", "quantity", "filled_quantity", "leaves_quantity", "cancelled_quantity", "average_price", "status", "created_at", "updated_at", "post_only", "self_trade_prevention", "expired_quantity", "quote_budget")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LEAVES_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    QUOTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price: str
    quantity: str
    filled_quantity: str
    leaves_quantity: str
    cancelled_quantity: str
    average_price: str
    status: _common_pb2.OrderStatus
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    expired_quantity: str
    quote_budget: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., filled_quantity: _Optional[str] = ..., leaves_quantity: _Optional[str] = ..., cancelled_quantity: _Optional[str] = ..., average_price: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.OrderStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., post_only: _Optional[bool] = ..., self_trade_prevention: _Optional[_Union[SelfTradePrevention, str]] = ..., expired_quantity: _Optional[str] = ..., quote_budget: _Optional[str] = ...) -> None: ...

class ExecutionReport(_message.Message):
    __slots__ = ("order", "execution_type", "trade_id", "last_price", "last_quantity", "last_fee", "fee_asset", "liquidity_side", "reject_reason", "timestamp", "trading_sequence", "cancel_reason", "account_sequence", "shard")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_FEE_FIELD_NUMBER: _ClassVar[int]
    FEE_ASSET_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    order: Order
    execution_type: _common_pb2.ExecutionType
    trade_id: str
    last_price: str
    last_quantity: str
    last_fee: str
    fee_asset: str
    liquidity_side: _common_pb2.LiquiditySide
    reject_reason: _common_pb2.RejectReason
    timestamp: _timestamp_pb2.Timestamp
    trading_sequence: int
    cancel_reason: _common_pb2.CancelReason
    account_sequence: int
    shard: str
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., execution_type: _Optional[_Union[_common_pb2.ExecutionType, str]] = ..., trade_id: _Optional[str] = ..., last_price: _Optional[str] = ..., last_quantity: _Optional[str] = ..., last_fee: _Optional[str] = ..., fee_asset: _Optional[str] = ..., liquidity_side: _Optional[_Union[_common_pb2.LiquiditySide, str]] = ..., reject_reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trading_sequence: _Optional[int] = ..., cancel_reason: _Optional[_Union[_common_pb2.CancelReason, str]] = ..., account_sequence: _Optional[int] = ..., shard: _Optional[str] = ...) -> None: ...

class SubmitOrderRequest(_message.Message):
    __slots__ = ("account_id", "client_order_id", "symbol", "side", "type", "time_in_force", "price", "quantity", "post_only", "self_trade_prevention", "quote_budget")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    QUOTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    client_order_id: str
    symbol: str
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price: str
    quantity: str
    post_only: bool
    self_trade_prevention: SelfTradePrevention
    quote_budget: str
    def __init__(self, account_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., post_only: _Optional[bool] = ..., self_trade_prevention: _Optional[_Union[SelfTradePrevention, str]] = ..., quote_budget: _Optional[str] = ...) -> None: ...

class ReplaceOrderRequest(_message.Message):
    __slots__ = ("account_id", "order_id", "price", "quantity")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    order_id: str
    price: str
    quantity: str
    def __init__(self, account_id: _Optional[str] = ..., order_id: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ...) -> None: ...

class ReplaceOrderResponse(_message.Message):
    __slots__ = ("order", "reports")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    order: Order
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ...) -> None: ...

class SubmitOrderResponse(_message.Message):
    __slots__ = ("order", "reports")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    order: Order
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("account_id", "order_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    order_id: str
    def __init__(self, account_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

class StreamOrdersRequest(_message.Message):
    __slots__ = ("commands", "cancel_on_disconnect")
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[OrderCommand]
    cancel_on_disconnect: bool
    def __init__(self, commands: _Optional[_Iterable[_Union[OrderCommand, _Mapping]]] = ..., cancel_on_disconnect: _Optional[bool] = ...) -> None: ...

class OrderCommand(_message.Message):
    __slots__ = ("submit", "cancel", "mass_cancel", "replace", "tag")
    SUBMIT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    MASS_CANCEL_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    submit: SubmitOrderRequest
    cancel: CancelOrderRequest
    mass_cancel: CancelAllOrdersRequest
    replace: ReplaceOrderRequest
    tag: str
    def __init__(self, submit: _Optional[_Union[SubmitOrderRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelOrderRequest, _Mapping]] = ..., mass_cancel: _Optional[_Union[CancelAllOrdersRequest, _Mapping]] = ..., replace: _Optional[_Union[ReplaceOrderRequest, _Mapping]] = ..., tag: _Optional[str] = ...) -> None: ...

class OrderCommandResult(_message.Message):
    __slots__ = ("request_number", "index", "tag", "client_order_id", "code", "reason", "message", "field", "order", "reports", "cancelled_count")
    REQUEST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_COUNT_FIELD_NUMBER: _ClassVar[int]
    request_number: int
    index: int
    tag: str
    client_order_id: str
    code: int
    reason: _common_pb2.RejectReason
    message: str
    field: str
    order: Order
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    cancelled_count: int
    def __init__(self, request_number: _Optional[int] = ..., index: _Optional[int] = ..., tag: _Optional[str] = ..., client_order_id: _Optional[str] = ..., code: _Optional[int] = ..., reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ..., cancelled_count: _Optional[int] = ...) -> None: ...

class StreamOrdersResponse(_message.Message):
    __slots__ = ("results", "reports", "max_in_flight")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OrderCommandResult]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    max_in_flight: int
    def __init__(self, results: _Optional[_Iterable[_Union[OrderCommandResult, _Mapping]]] = ..., reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("account_id", "order_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    order_id: str
    def __init__(self, account_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class StreamExecutionsRequest(_message.Message):
    __slots__ = ("account_id", "from_sequence", "from_shard_sequences")
    class FromShardSequencesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FROM_SHARD_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    from_sequence: int
    from_shard_sequences: _containers.ScalarMap[str, int]
    def __init__(self, account_id: _Optional[str] = ..., from_sequence: _Optional[int] = ..., from_shard_sequences: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StreamExecutionsResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ExecutionReport
    def __init__(self, report: _Optional[_Union[ExecutionReport, _Mapping]] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("account_id", "min_trading_sequence")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    min_trading_sequence: int
    def __init__(self, account_id: _Optional[str] = ..., min_trading_sequence: _Optional[int] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("asset", "total", "reserved", "available")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    asset: str
    total: str
    reserved: str
    available: str
    def __init__(self, asset: _Optional[str] = ..., total: _Optional[str] = ..., reserved: _Optional[str] = ..., available: _Optional[str] = ...) -> None: ...

class GetBalancesResponse(_message.Message):
    __slots__ = ("account_id", "balances", "trading_sequence")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    trading_sequence: int
    def __init__(self, account_id: _Optional[str] = ..., balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ..., trading_sequence: _Optional[int] = ...) -> None: ...

class Instrument(_message.Message):
    __slots__ = ("symbol", "base_asset", "quote_asset", "tick_size", "lot_size", "min_quantity", "max_quantity", "max_price", "maker_fee_bps", "taker_fee_bps", "status")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_ASSET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: str
    lot_size: str
    min_quantity: str
    max_quantity: str
    max_price: str
    maker_fee_bps: int
    taker_fee_bps: int
    status: _common_pb2.InstrumentStatus
    def __init__(self, symbol: _Optional[str] = ..., base_asset: _Optional[str] = ..., quote_asset: _Optional[str] = ..., tick_size: _Optional[str] = ..., lot_size: _Optional[str] = ..., min_quantity: _Optional[str] = ..., max_quantity: _Optional[str] = ..., max_price: _Optional[str] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.InstrumentStatus, str]] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[Instrument, _Mapping]]] = ...) -> None: ...

class GetOrderBookRequest(_message.Message):
    __slots__ = ("symbol", "depth")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    depth: int
    def __init__(self, symbol: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class PriceLevel(_message.Message):
    __slots__ = ("price", "quantity", "order_count")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    price: str
    quantity: str
    order_count: int
    def __init__(self, price: _Optional[str] = ..., quantity: _Optional[str] = ..., order_count: _Optional[int] = ...) -> None: ...

class GetOrderBookResponse(_message.Message):
    __slots__ = ("symbol", "bids", "asks")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    def __init__(self, symbol: _Optional[str] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ...) -> None: ...

class CreateAssetRequest(_message.Message):
    __slots__ = ("code", "scale")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    code: str
    scale: int
    def __init__(self, code: _Optional[str] = ..., scale: _Optional[int] = ...) -> None: ...

class CreateAssetResponse(_message.Message):
    __slots__ = ("code", "scale")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    code: str
    scale: int
    def __init__(self, code: _Optional[str] = ..., scale: _Optional[int] = ...) -> None: ...

class CreateInstrumentRequest(_message.Message):
    __slots__ = ("symbol", "base_asset", "quote_asset", "tick_size", "lot_size", "min_quantity", "max_quantity", "max_price", "maker_fee_bps", "taker_fee_bps")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_ASSET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: str
    lot_size: str
    min_quantity: str
    max_quantity: str
    max_price: str
    maker_fee_bps: int
    taker_fee_bps: int
    def __init__(self, symbol: _Optional[str] = ..., base_asset: _Optional[str] = ..., quote_asset: _Optional[str] = ..., tick_size: _Optional[str] = ..., lot_size: _Optional[str] = ..., min_quantity: _Optional[str] = ..., max_quantity: _Optional[str] = ..., max_price: _Optional[str] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ...) -> None: ...

class CreateInstrumentResponse(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account_id", "api_key")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    api_key: str
    def __init__(self, account_id: _Optional[str] = ..., api_key: _Optional[str] = ...) -> None: ...

class DepositRequest(_message.Message):
    __slots__ = ("deposit_id", "account_id", "asset", "amount")
    DEPOSIT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    deposit_id: str
    account_id: str
    asset: str
    amount: str
    def __init__(self, deposit_id: _Optional[str] = ..., account_id: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class DepositResponse(_message.Message):
    __slots__ = ("created", "balance")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    created: bool
    balance: str
    def __init__(self, created: _Optional[bool] = ..., balance: _Optional[str] = ...) -> None: ...

class ParkedTrade(_message.Message):
    __slots__ = ("source", "sequence", "trade_id", "symbol", "buy_account_id", "sell_account_id", "price", "quantity", "base_asset", "quote_asset", "base_amount", "quote_amount", "buyer_fee", "seller_fee", "reason", "detail", "account_ids", "parked_at", "resolved_at", "resolution")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BUY_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SELL_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BASE_ASSET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    BASE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    QUOTE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BUYER_FEE_FIELD_NUMBER: _ClassVar[int]
    SELLER_FEE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    PARKED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    source: str
    sequence: int
    trade_id: str
    symbol: str
    buy_account_id: str
    sell_account_id: str
    price: str
    quantity: str
    base_asset: str
    quote_asset: str
    base_amount: str
    quote_amount: str
    buyer_fee: str
    seller_fee: str
    reason: _common_pb2.RejectReason
    detail: str
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    parked_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    resolution: str
    def __init__(self, source: _Optional[str] = ..., sequence: _Optional[int] = ..., trade_id: _Optional[str] = ..., symbol: _Optional[str] = ..., buy_account_id: _Optional[str] = ..., sell_account_id: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., base_asset: _Optional[str] = ..., quote_asset: _Optional[str] = ..., base_amount: _Optional[str] = ..., quote_amount: _Optional[str] = ..., buyer_fee: _Optional[str] = ..., seller_fee: _Optional[str] = ..., reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., detail: _Optional[str] = ..., account_ids: _Optional[_Iterable[str]] = ..., parked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolution: _Optional[str] = ...) -> None: ...

class ListParkedTradesRequest(_message.Message):
    __slots__ = ("account_id", "include_resolved", "limit")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    include_resolved: bool
    limit: int
    def __init__(self, account_id: _Optional[str] = ..., include_resolved: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListParkedTradesResponse(_message.Message):
    __slots__ = ("parked_trades", "parked_count")
    PARKED_TRADES_FIELD_NUMBER: _ClassVar[int]
    PARKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    parked_trades: _containers.RepeatedCompositeFieldContainer[ParkedTrade]
    parked_count: int
    def __init__(self, parked_trades: _Optional[_Iterable[_Union[ParkedTrade, _Mapping]]] = ..., parked_count: _Optional[int] = ...) -> None: ...

class AccountHalt(_message.Message):
    __slots__ = ("account_id", "reason", "source", "trade_id", "halted_at", "parked_trades")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    HALTED_AT_FIELD_NUMBER: _ClassVar[int]
    PARKED_TRADES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reason: _common_pb2.RejectReason
    source: str
    trade_id: str
    halted_at: _timestamp_pb2.Timestamp
    parked_trades: int
    def __init__(self, account_id: _Optional[str] = ..., reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., source: _Optional[str] = ..., trade_id: _Optional[str] = ..., halted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parked_trades: _Optional[int] = ...) -> None: ...

class ListHaltedAccountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHaltedAccountsResponse(_message.Message):
    __slots__ = ("halts",)
    HALTS_FIELD_NUMBER: _ClassVar[int]
    halts: _containers.RepeatedCompositeFieldContainer[AccountHalt]
    def __init__(self, halts: _Optional[_Iterable[_Union[AccountHalt, _Mapping]]] = ...) -> None: ...

class RetryParkedTradeRequest(_message.Message):
    __slots__ = ("source", "trade_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    source: str
    trade_id: str
    def __init__(self, source: _Optional[str] = ..., trade_id: _Optional[str] = ...) -> None: ...

class RetryParkedTradeResponse(_message.Message):
    __slots__ = ("posted", "halts_lifted", "halts")
    POSTED_FIELD_NUMBER: _ClassVar[int]
    HALTS_LIFTED_FIELD_NUMBER: _ClassVar[int]
    HALTS_FIELD_NUMBER: _ClassVar[int]
    posted: _containers.RepeatedCompositeFieldContainer[ParkedTrade]
    halts_lifted: _containers.RepeatedScalarFieldContainer[str]
    halts: _containers.RepeatedCompositeFieldContainer[AccountHalt]
    def __init__(self, posted: _Optional[_Iterable[_Union[ParkedTrade, _Mapping]]] = ..., halts_lifted: _Optional[_Iterable[str]] = ..., halts: _Optional[_Iterable[_Union[AccountHalt, _Mapping]]] = ...) -> None: ...

class StreamMarketDataRequest(_message.Message):
    __slots__ = ("symbols", "depth")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    depth: int
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., depth: _Optional[int] = ...) -> None: ...

class MarketTrade(_message.Message):
    __slots__ = ("trade_id", "price", "quantity", "aggressor_side", "time")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AGGRESSOR_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    price: str
    quantity: str
    aggressor_side: _common_pb2.Side
    time: _timestamp_pb2.Timestamp
    def __init__(self, trade_id: _Optional[int] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., aggressor_side: _Optional[_Union[_common_pb2.Side, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MarketDataUpdate(_message.Message):
    __slots__ = ("symbol", "sequence", "snapshot", "resync", "bids", "asks", "trades", "time")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    sequence: int
    snapshot: bool
    resync: bool
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    trades: _containers.RepeatedCompositeFieldContainer[MarketTrade]
    time: _timestamp_pb2.Timestamp
    def __init__(self, symbol: _Optional[str] = ..., sequence: _Optional[int] = ..., snapshot: _Optional[bool] = ..., resync: _Optional[bool] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., trades: _Optional[_Iterable[_Union[MarketTrade, _Mapping]]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamMarketDataResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[MarketDataUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[MarketDataUpdate, _Mapping]]] = ...) -> None: ...

class GetEngineStateRequest(_message.Message):
    __slots__ = ("shard",)
    SHARD_FIELD_NUMBER: _ClassVar[int]
    shard: str
    def __init__(self, shard: _Optional[str] = ...) -> None: ...

class EngineState(_message.Message):
    __slots__ = ("shard", "journal_sequence", "state_hash", "open_orders", "orders", "instruments")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    shard: str
    journal_sequence: int
    state_hash: str
    open_orders: int
    orders: int
    instruments: int
    def __init__(self, shard: _Optional[str] = ..., journal_sequence: _Optional[int] = ..., state_hash: _Optional[str] = ..., open_orders: _Optional[int] = ..., orders: _Optional[int] = ..., instruments: _Optional[int] = ...) -> None: ...

class GetEngineStateResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[EngineState]
    def __init__(self, shards: _Optional[_Iterable[_Union[EngineState, _Mapping]]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("account_id", "symbol", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFillsRequest(_message.Message):
    __slots__ = ("account_id", "symbol", "start_time", "end_time", "start_trade_id", "end_trade_id", "page_size", "page_token", "min_trading_sequence")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    END_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    start_trade_id: str
    end_trade_id: str
    page_size: int
    page_token: str
    min_trading_sequence: int
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_trade_id: _Optional[str] = ..., end_trade_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., min_trading_sequence: _Optional[int] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("trade_id", "order_id", "client_order_id", "account_id", "symbol", "side", "price", "quantity", "fee", "fee_asset", "liquidity_side", "timestamp", "trading_sequence")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    FEE_ASSET_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    trade_id: str
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    price: str
    quantity: str
    fee: str
    fee_asset: str
    liquidity_side: _common_pb2.LiquiditySide
    timestamp: _timestamp_pb2.Timestamp
    trading_sequence: int
    def __init__(self, trade_id: _Optional[str] = ..., order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price: _Optional[str] = ..., quantity: _Optional[str] = ..., fee: _Optional[str] = ..., fee_asset: _Optional[str] = ..., liquidity_side: _Optional[_Union[_common_pb2.LiquiditySide, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trading_sequence: _Optional[int] = ...) -> None: ...

class ListFillsResponse(_message.Message):
    __slots__ = ("fills", "next_page_token", "trading_sequence")
    FILLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    next_page_token: str
    trading_sequence: int
    def __init__(self, fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., trading_sequence: _Optional[int] = ...) -> None: ...

class CancelAllOrdersRequest(_message.Message):
    __slots__ = ("account_id", "symbol")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class CancelAllOrdersResponse(_message.Message):
    __slots__ = ("cancelled_count", "orders", "trading_sequence")
    CANCELLED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    TRADING_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    cancelled_count: int
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    trading_sequence: int
    def __init__(self, cancelled_count: _Optional[int] = ..., orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., trading_sequence: _Optional[int] = ...) -> None: ...

class SetInstrumentStatusRequest(_message.Message):
    __slots__ = ("symbol", "status")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    status: _common_pb2.InstrumentStatus
    def __init__(self, symbol: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.InstrumentStatus, str]] = ...) -> None: ...

class SetInstrumentStatusResponse(_message.Message):
    __slots__ = ("instrument", "changed")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    instrument: Instrument
    changed: bool
    def __init__(self, instrument: _Optional[_Union[Instrument, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class ExpireDayOrdersRequest(_message.Message):
    __slots__ = ("symbol",)
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    def __init__(self, symbol: _Optional[str] = ...) -> None: ...

class ExpireDayOrdersResponse(_message.Message):
    __slots__ = ("expired_count", "orders")
    EXPIRED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    expired_count: int
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, expired_count: _Optional[int] = ..., orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...
