from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]
    TIME_IN_FORCE_DAY: _ClassVar[TimeInForce]

class PostOnly(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POST_ONLY_UNSPECIFIED: _ClassVar[PostOnly]
    POST_ONLY_REJECT: _ClassVar[PostOnly]
    POST_ONLY_REPRICE: _ClassVar[PostOnly]

class SelfTradePrevention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SELF_TRADE_PREVENTION_UNSPECIFIED: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_RESTING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_INCOMING: _ClassVar[SelfTradePrevention]
    SELF_TRADE_PREVENTION_CANCEL_BOTH: _ClassVar[SelfTradePrevention]

class InstrumentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTRUMENT_STATUS_UNSPECIFIED: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_TRADING: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_HALTED: _ClassVar[InstrumentStatus]
    INSTRUMENT_STATUS_CLOSED: _ClassVar[InstrumentStatus]

class CancelReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANCEL_REASON_UNSPECIFIED: _ClassVar[CancelReason]
    CANCEL_REASON_REQUESTED: _ClassVar[CancelReason]
    CANCEL_REASON_MASS_CANCEL: _ClassVar[CancelReason]
    CANCEL_REASON_SELF_TRADE_PREVENTED: _ClassVar[CancelReason]
    CANCEL_REASON_IOC_REMAINDER: _ClassVar[CancelReason]
    CANCEL_REASON_MARKET_REMAINDER: _ClassVar[CancelReason]
    CANCEL_REASON_FOK_UNFILLABLE: _ClassVar[CancelReason]
    CANCEL_REASON_DAY_EXPIRED: _ClassVar[CancelReason]

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_NEW: _ClassVar[OrderStatus]
    ORDER_STATUS_PARTIALLY_FILLED: _ClassVar[OrderStatus]
    ORDER_STATUS_FILLED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
    ORDER_STATUS_REJECTED: _ClassVar[OrderStatus]
    ORDER_STATUS_EXPIRED: _ClassVar[OrderStatus]

class ExecutionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_TYPE_UNSPECIFIED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_ACCEPTED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_TRADE: _ClassVar[ExecutionType]
    EXECUTION_TYPE_CANCELLED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_REJECTED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_EXPIRED: _ClassVar[ExecutionType]
    EXECUTION_TYPE_REPLACED: _ClassVar[ExecutionType]

class LiquiditySide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIQUIDITY_SIDE_UNSPECIFIED: _ClassVar[LiquiditySide]
    LIQUIDITY_SIDE_MAKER: _ClassVar[LiquiditySide]
    LIQUIDITY_SIDE_TAKER: _ClassVar[LiquiditySide]

class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_REASON_UNSPECIFIED: _ClassVar[RejectReason]
    REJECT_REASON_REQUIRED: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_ACCOUNT_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_ASSET_CODE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_SYMBOL: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_CLIENT_ORDER_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_ORDER_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_DEPOSIT_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_SIDE: _ClassVar[RejectReason]
    REJECT_REASON_UNSUPPORTED_ORDER_TYPE: _ClassVar[RejectReason]
    REJECT_REASON_UNSUPPORTED_TIME_IN_FORCE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_PRICE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_QUANTITY: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_AMOUNT: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_DEPTH: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_SCALE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_TICK_SIZE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_LOT_SIZE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_MIN_QUANTITY: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_MAX_QUANTITY: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_MAX_PRICE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_FEE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_LIMIT: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_API_KEY_DIGEST: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_TRADE_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_TAG: _ClassVar[RejectReason]
    REJECT_REASON_MISSING_API_KEY: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_API_KEY: _ClassVar[RejectReason]
    REJECT_REASON_MISSING_ADMIN_KEY: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_ADMIN_KEY: _ClassVar[RejectReason]
    REJECT_REASON_ADMIN_DISABLED: _ClassVar[RejectReason]
    REJECT_REASON_ACCOUNT_NOT_PERMITTED: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_SYMBOL: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_ORDER: _ClassVar[RejectReason]
    REJECT_REASON_DUPLICATE_CLIENT_ORDER_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_PAGE_TOKEN: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_RANGE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_INSTRUMENT_STATUS: _ClassVar[RejectReason]
    REJECT_REASON_INSUFFICIENT_BALANCE: _ClassVar[RejectReason]
    REJECT_REASON_RISK_STATE_INCONSISTENT: _ClassVar[RejectReason]
    REJECT_REASON_REPLACE_IN_FLIGHT: _ClassVar[RejectReason]
    REJECT_REASON_DUPLICATE_ORDER_ID: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_ORDER: _ClassVar[RejectReason]
    REJECT_REASON_NOT_ORDER_OWNER: _ClassVar[RejectReason]
    REJECT_REASON_ORDER_NOT_OPEN: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_INSTRUMENT: _ClassVar[RejectReason]
    REJECT_REASON_INSTRUMENT_EXISTS: _ClassVar[RejectReason]
    REJECT_REASON_ORDER_FENCED: _ClassVar[RejectReason]
    REJECT_REASON_MARKET_PROTECTION_REQUIRED: _ClassVar[RejectReason]
    REJECT_REASON_MARKET_ORDER_CANNOT_REST: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_QUOTE_BUDGET: _ClassVar[RejectReason]
    REJECT_REASON_POST_ONLY_WOULD_TAKE: _ClassVar[RejectReason]
    REJECT_REASON_INSTRUMENT_HALTED: _ClassVar[RejectReason]
    REJECT_REASON_INSTRUMENT_CLOSED: _ClassVar[RejectReason]
    REJECT_REASON_REPLACE_QUANTITY_TOO_SMALL: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_COMMAND: _ClassVar[RejectReason]
    REJECT_REASON_REPLACE_FENCED: _ClassVar[RejectReason]
    REJECT_REASON_SYMBOL_NOT_OWNED: _ClassVar[RejectReason]
    REJECT_REASON_NO_SHARD_FOR_SYMBOL: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_SHARD: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_ASSET: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_ACCOUNT: _ClassVar[RejectReason]
    REJECT_REASON_ASSET_EXISTS: _ClassVar[RejectReason]
    REJECT_REASON_ACCOUNT_EXISTS: _ClassVar[RejectReason]
    REJECT_REASON_API_KEY_EXISTS: _ClassVar[RejectReason]
    REJECT_REASON_DEPOSIT_ID_REUSED: _ClassVar[RejectReason]
    REJECT_REASON_SYSTEM_ACCOUNT: _ClassVar[RejectReason]
    REJECT_REASON_NEGATIVE_BALANCE: _ClassVar[RejectReason]
    REJECT_REASON_BALANCE_TOO_LARGE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_TRADE: _ClassVar[RejectReason]
    REJECT_REASON_AMOUNT_OUT_OF_RANGE: _ClassVar[RejectReason]
    REJECT_REASON_ACCOUNT_HALTED: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_PARKED_TRADE: _ClassVar[RejectReason]
    REJECT_REASON_SOURCE_REQUIRED: _ClassVar[RejectReason]
    REJECT_REASON_SOURCE_CHANGED: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_SOURCE: _ClassVar[RejectReason]
    REJECT_REASON_HELLO_EXPECTED: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_SEQUENCE: _ClassVar[RejectReason]
    REJECT_REASON_MALFORMED_EVENT: _ClassVar[RejectReason]
    REJECT_REASON_TOO_MANY_COMMANDS: _ClassVar[RejectReason]
    REJECT_REASON_PROTOCOL_ERROR: _ClassVar[RejectReason]
    REJECT_REASON_SEQUENCE_BEYOND_END: _ClassVar[RejectReason]
    REJECT_REASON_SERVICE_STARTING: _ClassVar[RejectReason]
    REJECT_REASON_SERVICE_STOPPING: _ClassVar[RejectReason]
    REJECT_REASON_BACKPRESSURE: _ClassVar[RejectReason]
    REJECT_REASON_NOT_SENT: _ClassVar[RejectReason]
    REJECT_REASON_OUTCOME_UNKNOWN: _ClassVar[RejectReason]
    REJECT_REASON_RISK_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_TRADING_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_REDIS_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_SLOW_CONSUMER: _ClassVar[RejectReason]
    REJECT_REASON_EXECUTIONS_INTERRUPTED: _ClassVar[RejectReason]
    REJECT_REASON_UNREACHABLE: _ClassVar[RejectReason]
    REJECT_REASON_SETTLEMENT_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_RISK_REBUILDING: _ClassVar[RejectReason]
    REJECT_REASON_RISK_REBUILT: _ClassVar[RejectReason]
    REJECT_REASON_DATABASE_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_MARKET_DATA_INTERRUPTED: _ClassVar[RejectReason]
    REJECT_REASON_HISTORY_BEHIND: _ClassVar[RejectReason]
    REJECT_REASON_CLIENT_ORDER_ID_UNCHECKED: _ClassVar[RejectReason]
    REJECT_REASON_INTERNAL_ERROR: _ClassVar[RejectReason]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_MARKET: OrderType
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce
TIME_IN_FORCE_DAY: TimeInForce
POST_ONLY_UNSPECIFIED: PostOnly
POST_ONLY_REJECT: PostOnly
POST_ONLY_REPRICE: PostOnly
SELF_TRADE_PREVENTION_UNSPECIFIED: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_RESTING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_INCOMING: SelfTradePrevention
SELF_TRADE_PREVENTION_CANCEL_BOTH: SelfTradePrevention
INSTRUMENT_STATUS_UNSPECIFIED: InstrumentStatus
INSTRUMENT_STATUS_TRADING: InstrumentStatus
INSTRUMENT_STATUS_HALTED: InstrumentStatus
INSTRUMENT_STATUS_CLOSED: InstrumentStatus
CANCEL_REASON_UNSPECIFIED: CancelReason
CANCEL_REASON_REQUESTED: CancelReason
CANCEL_REASON_MASS_CANCEL: CancelReason
CANCEL_REASON_SELF_TRADE_PREVENTED: CancelReason
CANCEL_REASON_IOC_REMAINDER: CancelReason
CANCEL_REASON_MARKET_REMAINDER: CancelReason
CANCEL_REASON_FOK_UNFILLABLE: CancelReason
CANCEL_REASON_DAY_EXPIRED: CancelReason
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_NEW: OrderStatus
ORDER_STATUS_PARTIALLY_FILLED: OrderStatus
ORDER_STATUS_FILLED: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus
ORDER_STATUS_REJECTED: OrderStatus
ORDER_STATUS_EXPIRED: OrderStatus
EXECUTION_TYPE_UNSPECIFIED: ExecutionType
EXECUTION_TYPE_ACCEPTED: ExecutionType
EXECUTION_TYPE_TRADE: ExecutionType
EXECUTION_TYPE_CANCELLED: ExecutionType
EXECUTION_TYPE_REJECTED: ExecutionType
EXECUTION_TYPE_EXPIRED: ExecutionType
EXECUTION_TYPE_REPLACED: ExecutionType
LIQUIDITY_SIDE_UNSPECIFIED: LiquiditySide
LIQUIDITY_SIDE_MAKER: LiquiditySide
LIQUIDITY_SIDE_TAKER: LiquiditySide
REJECT_REASON_UNSPECIFIED: RejectReason
REJECT_REASON_REQUIRED: RejectReason
REJECT_REASON_INVALID_ACCOUNT_ID: RejectReason
REJECT_REASON_INVALID_ASSET_CODE: RejectReason
REJECT_REASON_INVALID_SYMBOL: RejectReason
REJECT_REASON_INVALID_CLIENT_ORDER_ID: RejectReason
REJECT_REASON_INVALID_ORDER_ID: RejectReason
REJECT_REASON_INVALID_DEPOSIT_ID: RejectReason
REJECT_REASON_INVALID_SIDE: RejectReason
REJECT_REASON_UNSUPPORTED_ORDER_TYPE: RejectReason
REJECT_REASON_UNSUPPORTED_TIME_IN_FORCE: RejectReason
REJECT_REASON_INVALID_PRICE: RejectReason
REJECT_REASON_INVALID_QUANTITY: RejectReason
REJECT_REASON_INVALID_AMOUNT: RejectReason
REJECT_REASON_INVALID_DEPTH: RejectReason
REJECT_REASON_INVALID_SCALE: RejectReason
REJECT_REASON_INVALID_TICK_SIZE: RejectReason
REJECT_REASON_INVALID_LOT_SIZE: RejectReason
REJECT_REASON_INVALID_MIN_QUANTITY: RejectReason
REJECT_REASON_INVALID_MAX_QUANTITY: RejectReason
REJECT_REASON_INVALID_MAX_PRICE: RejectReason
REJECT_REASON_INVALID_FEE: RejectReason
REJECT_REASON_INVALID_LIMIT: RejectReason
REJECT_REASON_INVALID_API_KEY_DIGEST: RejectReason
REJECT_REASON_INVALID_TRADE_ID: RejectReason
REJECT_REASON_INVALID_TAG: RejectReason
REJECT_REASON_MISSING_API_KEY: RejectReason
REJECT_REASON_UNKNOWN_API_KEY: RejectReason
REJECT_REASON_MISSING_ADMIN_KEY: RejectReason
REJECT_REASON_INVALID_ADMIN_KEY: RejectReason
REJECT_REASON_ADMIN_DISABLED: RejectReason
REJECT_REASON_ACCOUNT_NOT_PERMITTED: RejectReason
REJECT_REASON_UNKNOWN_SYMBOL: RejectReason
REJECT_REASON_UNKNOWN_ORDER: RejectReason
REJECT_REASON_DUPLICATE_CLIENT_ORDER_ID: RejectReason
REJECT_REASON_INVALID_PAGE_TOKEN: RejectReason
REJECT_REASON_INVALID_RANGE: RejectReason
REJECT_REASON_INVALID_INSTRUMENT_STATUS: RejectReason
REJECT_REASON_INSUFFICIENT_BALANCE: RejectReason
REJECT_REASON_RISK_STATE_INCONSISTENT: RejectReason
REJECT_REASON_REPLACE_IN_FLIGHT: RejectReason
REJECT_REASON_DUPLICATE_ORDER_ID: RejectReason
REJECT_REASON_INVALID_ORDER: RejectReason
REJECT_REASON_NOT_ORDER_OWNER: RejectReason
REJECT_REASON_ORDER_NOT_OPEN: RejectReason
REJECT_REASON_INVALID_INSTRUMENT: RejectReason
REJECT_REASON_INSTRUMENT_EXISTS: RejectReason
REJECT_REASON_ORDER_FENCED: RejectReason
REJECT_REASON_MARKET_PROTECTION_REQUIRED: RejectReason
REJECT_REASON_MARKET_ORDER_CANNOT_REST: RejectReason
REJECT_REASON_INVALID_QUOTE_BUDGET: RejectReason
REJECT_REASON_POST_ONLY_WOULD_TAKE: RejectReason
REJECT_REASON_INSTRUMENT_HALTED: RejectReason
REJECT_REASON_INSTRUMENT_CLOSED: RejectReason
REJECT_REASON_REPLACE_QUANTITY_TOO_SMALL: RejectReason
REJECT_REASON_INVALID_COMMAND: RejectReason
REJECT_REASON_REPLACE_FENCED: RejectReason
REJECT_REASON_SYMBOL_NOT_OWNED: RejectReason
REJECT_REASON_NO_SHARD_FOR_SYMBOL: RejectReason
REJECT_REASON_UNKNOWN_SHARD: RejectReason
REJECT_REASON_UNKNOWN_ASSET: RejectReason
REJECT_REASON_UNKNOWN_ACCOUNT: RejectReason
REJECT_REASON_ASSET_EXISTS: RejectReason
REJECT_REASON_ACCOUNT_EXISTS: RejectReason
REJECT_REASON_API_KEY_EXISTS: RejectReason
REJECT_REASON_DEPOSIT_ID_REUSED: RejectReason
REJECT_REASON_SYSTEM_ACCOUNT: RejectReason
REJECT_REASON_NEGATIVE_BALANCE: RejectReason
REJECT_REASON_BALANCE_TOO_LARGE: RejectReason
REJECT_REASON_INVALID_TRADE: RejectReason
REJECT_REASON_AMOUNT_OUT_OF_RANGE: RejectReason
REJECT_REASON_ACCOUNT_HALTED: RejectReason
REJECT_REASON_UNKNOWN_PARKED_TRADE: RejectReason
REJECT_REASON_SOURCE_REQUIRED: RejectReason
REJECT_REASON_SOURCE_CHANGED: RejectReason
REJECT_REASON_INVALID_SOURCE: RejectReason
REJECT_REASON_HELLO_EXPECTED: RejectReason
REJECT_REASON_INVALID_SEQUENCE: RejectReason
REJECT_REASON_MALFORMED_EVENT: RejectReason
REJECT_REASON_TOO_MANY_COMMANDS: RejectReason
REJECT_REASON_PROTOCOL_ERROR: RejectReason
REJECT_REASON_SEQUENCE_BEYOND_END: RejectReason
REJECT_REASON_SERVICE_STARTING: RejectReason
REJECT_REASON_SERVICE_STOPPING: RejectReason
REJECT_REASON_BACKPRESSURE: RejectReason
REJECT_REASON_NOT_SENT: RejectReason
REJECT_REASON_OUTCOME_UNKNOWN: RejectReason
REJECT_REASON_RISK_UNAVAILABLE: RejectReason
REJECT_REASON_TRADING_UNAVAILABLE: RejectReason
REJECT_REASON_REDIS_UNAVAILABLE: RejectReason
REJECT_REASON_SLOW_CONSUMER: RejectReason
REJECT_REASON_EXECUTIONS_INTERRUPTED: RejectReason
REJECT_REASON_UNREACHABLE: RejectReason
REJECT_REASON_SETTLEMENT_UNAVAILABLE: RejectReason
REJECT_REASON_RISK_REBUILDING: RejectReason
REJECT_REASON_RISK_REBUILT: RejectReason
REJECT_REASON_DATABASE_UNAVAILABLE: RejectReason
REJECT_REASON_MARKET_DATA_INTERRUPTED: RejectReason
REJECT_REASON_HISTORY_BEHIND: RejectReason
REJECT_REASON_CLIENT_ORDER_ID_UNCHECKED: RejectReason
REJECT_REASON_INTERNAL_ERROR: RejectReason

class Instrument(_message.Message):
    __slots__ = ("symbol", "base_asset", "quote_asset", "base_scale", "quote_scale", "tick_size", "lot_size", "min_quantity_lots", "max_quantity_lots", "max_price_ticks", "base_minor_per_lot", "quote_minor_per_tick_lot", "maker_fee_bps", "taker_fee_bps", "status")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BASE_ASSET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    BASE_SCALE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_SCALE_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    LOT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    BASE_MINOR_PER_LOT_FIELD_NUMBER: _ClassVar[int]
    QUOTE_MINOR_PER_TICK_LOT_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    base_asset: str
    quote_asset: str
    base_scale: int
    quote_scale: int
    tick_size: str
    lot_size: str
    min_quantity_lots: int
    max_quantity_lots: int
    max_price_ticks: int
    base_minor_per_lot: int
    quote_minor_per_tick_lot: int
    maker_fee_bps: int
    taker_fee_bps: int
    status: InstrumentStatus
    def __init__(self, symbol: _Optional[str] = ..., base_asset: _Optional[str] = ..., quote_asset: _Optional[str] = ..., base_scale: _Optional[int] = ..., quote_scale: _Optional[int] = ..., tick_size: _Optional[str] = ..., lot_size: _Optional[str] = ..., min_quantity_lots: _Optional[int] = ..., max_quantity_lots: _Optional[int] = ..., max_price_ticks: _Optional[int] = ..., base_minor_per_lot: _Optional[int] = ..., quote_minor_per_tick_lot: _Optional[int] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ..., status: _Optional[_Union[InstrumentStatus, str]] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("trade_id", "symbol", "price_ticks", "quantity_lots", "buy_order_id", "sell_order_id", "buy_account_id", "sell_account_id", "maker_side", "base_asset", "quote_asset", "base_amount", "quote_amount", "buyer_fee", "seller_fee", "buy_limit_price_ticks", "buy_leaves_lots", "sell_leaves_lots", "timestamp_ns", "buy_quote_budget")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    BUY_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SELL_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    BUY_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SELL_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    MAKER_SIDE_FIELD_NUMBER: _ClassVar[int]
    BASE_ASSET_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ASSET_FIELD_NUMBER: _ClassVar[int]
    BASE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    QUOTE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BUYER_FEE_FIELD_NUMBER: _ClassVar[int]
    SELLER_FEE_FIELD_NUMBER: _ClassVar[int]
    BUY_LIMIT_PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    BUY_LEAVES_LOTS_FIELD_NUMBER: _ClassVar[int]
    SELL_LEAVES_LOTS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    BUY_QUOTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    symbol: str
    price_ticks: int
    quantity_lots: int
    buy_order_id: str
    sell_order_id: str
    buy_account_id: str
    sell_account_id: str
    maker_side: Side
    base_asset: str
    quote_asset: str
    base_amount: int
    quote_amount: int
    buyer_fee: int
    seller_fee: int
    buy_limit_price_ticks: int
    buy_leaves_lots: int
    sell_leaves_lots: int
    timestamp_ns: int
    buy_quote_budget: int
    def __init__(self, trade_id: _Optional[int] = ..., symbol: _Optional[str] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., buy_order_id: _Optional[str] = ..., sell_order_id: _Optional[str] = ..., buy_account_id: _Optional[str] = ..., sell_account_id: _Optional[str] = ..., maker_side: _Optional[_Union[Side, str]] = ..., base_asset: _Optional[str] = ..., quote_asset: _Optional[str] = ..., base_amount: _Optional[int] = ..., quote_amount: _Optional[int] = ..., buyer_fee: _Optional[int] = ..., seller_fee: _Optional[int] = ..., buy_limit_price_ticks: _Optional[int] = ..., buy_leaves_lots: _Optional[int] = ..., sell_leaves_lots: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., buy_quote_budget: _Optional[int] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "client_order_id", "account_id", "symbol", "side", "type", "time_in_force", "price_ticks", "quantity_lots", "filled_lots", "leaves_lots", "cancelled_lots", "status", "filled_notional_ticks_lots", "created_ns", "updated_ns", "post_only", "self_trade_prevention", "quote_budget", "expired_lots", "reserve_price_ticks")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    FILLED_LOTS_FIELD_NUMBER: _ClassVar[int]
    LEAVES_LOTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_LOTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILLED_NOTIONAL_TICKS_LOTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_NS_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    QUOTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_LOTS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price_ticks: int
    quantity_lots: int
    filled_lots: int
    leaves_lots: int
    cancelled_lots: int
    status: OrderStatus
    filled_notional_ticks_lots: int
    created_ns: int
    updated_ns: int
    post_only: PostOnly
    self_trade_prevention: SelfTradePrevention
    quote_budget: int
    expired_lots: int
    reserve_price_ticks: int
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., type: _Optional[_Union[OrderType, str]] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., filled_lots: _Optional[int] = ..., leaves_lots: _Optional[int] = ..., cancelled_lots: _Optional[int] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., filled_notional_ticks_lots: _Optional[int] = ..., created_ns: _Optional[int] = ..., updated_ns: _Optional[int] = ..., post_only: _Optional[_Union[PostOnly, str]] = ..., self_trade_prevention: _Optional[_Union[SelfTradePrevention, str]] = ..., quote_budget: _Optional[int] = ..., expired_lots: _Optional[int] = ..., reserve_price_ticks: _Optional[int] = ...) -> None: ...

class ExecutionReport(_message.Message):
    __slots__ = ("order", "execution_type", "trade_id", "last_price_ticks", "last_quantity_lots", "last_fee", "liquidity_side", "reject_reason", "timestamp_ns", "journal_sequence", "account_sequence", "cancel_reason")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FEE_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    order: Order
    execution_type: ExecutionType
    trade_id: int
    last_price_ticks: int
    last_quantity_lots: int
    last_fee: int
    liquidity_side: LiquiditySide
    reject_reason: RejectReason
    timestamp_ns: int
    journal_sequence: int
    account_sequence: int
    cancel_reason: CancelReason
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., execution_type: _Optional[_Union[ExecutionType, str]] = ..., trade_id: _Optional[int] = ..., last_price_ticks: _Optional[int] = ..., last_quantity_lots: _Optional[int] = ..., last_fee: _Optional[int] = ..., liquidity_side: _Optional[_Union[LiquiditySide, str]] = ..., reject_reason: _Optional[_Union[RejectReason, str]] = ..., timestamp_ns: _Optional[int] = ..., journal_sequence: _Optional[int] = ..., account_sequence: _Optional[int] = ..., cancel_reason: _Optional[_Union[CancelReason, str]] = ...) -> None: ...

class OrderReleased(_message.Message):
    __slots__ = ("order_id", "account_id", "symbol", "side", "released_lots", "timestamp_ns")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_LOTS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    symbol: str
    side: Side
    released_lots: int
    timestamp_ns: int
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., released_lots: _Optional[int] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class OrderFenced(_message.Message):
    __slots__ = ("order_id", "account_id", "timestamp_ns")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    timestamp_ns: int
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class ReplaceFenced(_message.Message):
    __slots__ = ("order_id", "account_id", "replace_id", "timestamp_ns")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    replace_id: str
    timestamp_ns: int
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., replace_id: _Optional[str] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class OrderReplaced(_message.Message):
    __slots__ = ("order_id", "account_id", "symbol", "side", "old_price_ticks", "new_price_ticks", "old_leaves_lots", "new_leaves_lots", "priority_kept", "timestamp_ns")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    OLD_PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    NEW_PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    OLD_LEAVES_LOTS_FIELD_NUMBER: _ClassVar[int]
    NEW_LEAVES_LOTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_KEPT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    symbol: str
    side: Side
    old_price_ticks: int
    new_price_ticks: int
    old_leaves_lots: int
    new_leaves_lots: int
    priority_kept: bool
    timestamp_ns: int
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., old_price_ticks: _Optional[int] = ..., new_price_ticks: _Optional[int] = ..., old_leaves_lots: _Optional[int] = ..., new_leaves_lots: _Optional[int] = ..., priority_kept: _Optional[bool] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...
