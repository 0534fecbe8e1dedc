from backbone.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLUTION_UNSPECIFIED: _ClassVar[Resolution]
    RESOLUTION_FOUND: _ClassVar[Resolution]
    RESOLUTION_FENCED: _ClassVar[Resolution]

class ReplaceResolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLACE_RESOLUTION_UNSPECIFIED: _ClassVar[ReplaceResolution]
    REPLACE_RESOLUTION_APPLIED: _ClassVar[ReplaceResolution]
    REPLACE_RESOLUTION_FENCED: _ClassVar[ReplaceResolution]
    REPLACE_RESOLUTION_ORDER_GONE: _ClassVar[ReplaceResolution]
RESOLUTION_UNSPECIFIED: Resolution
RESOLUTION_FOUND: Resolution
RESOLUTION_FENCED: Resolution
REPLACE_RESOLUTION_UNSPECIFIED: ReplaceResolution
REPLACE_RESOLUTION_APPLIED: ReplaceResolution
REPLACE_RESOLUTION_FENCED: ReplaceResolution
REPLACE_RESOLUTION_ORDER_GONE: ReplaceResolution

class NewOrder(_message.Message):
    __slots__ = ("order_id", "client_order_id", "account_id", "symbol", "side", "type", "time_in_force", "price_ticks", "quantity_lots", "risk_epoch", "post_only", "self_trade_prevention", "quote_budget")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    RISK_EPOCH_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    SELF_TRADE_PREVENTION_FIELD_NUMBER: _ClassVar[int]
    QUOTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    price_ticks: int
    quantity_lots: int
    risk_epoch: str
    post_only: _common_pb2.PostOnly
    self_trade_prevention: _common_pb2.SelfTradePrevention
    quote_budget: int
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., risk_epoch: _Optional[str] = ..., post_only: _Optional[_Union[_common_pb2.PostOnly, str]] = ..., self_trade_prevention: _Optional[_Union[_common_pb2.SelfTradePrevention, str]] = ..., quote_budget: _Optional[int] = ...) -> None: ...

class ReplaceOrder(_message.Message):
    __slots__ = ("order_id", "account_id", "price_ticks", "quantity_lots", "risk_epoch", "replace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    RISK_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    price_ticks: int
    quantity_lots: int
    risk_epoch: str
    replace_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., risk_epoch: _Optional[str] = ..., replace_id: _Optional[str] = ...) -> None: ...

class MassCancel(_message.Message):
    __slots__ = ("account_id", "symbol")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class ExpireOrders(_message.Message):
    __slots__ = ("symbol", "time_in_force")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    time_in_force: _common_pb2.TimeInForce
    def __init__(self, symbol: _Optional[str] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ...) -> None: ...

class SetInstrumentStatus(_message.Message):
    __slots__ = ("symbol", "status")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    status: _common_pb2.InstrumentStatus
    def __init__(self, symbol: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.InstrumentStatus, str]] = ...) -> None: ...

class RiskEpochChanged(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    def __init__(self, epoch: _Optional[str] = ...) -> None: ...

class CancelOrder(_message.Message):
    __slots__ = ("order_id", "account_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class OrderCommand(_message.Message):
    __slots__ = ("new_order", "cancel_order", "replace_order", "mass_cancel")
    NEW_ORDER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ORDER_FIELD_NUMBER: _ClassVar[int]
    MASS_CANCEL_FIELD_NUMBER: _ClassVar[int]
    new_order: NewOrder
    cancel_order: CancelOrder
    replace_order: ReplaceOrder
    mass_cancel: MassCancel
    def __init__(self, new_order: _Optional[_Union[NewOrder, _Mapping]] = ..., cancel_order: _Optional[_Union[CancelOrder, _Mapping]] = ..., replace_order: _Optional[_Union[ReplaceOrder, _Mapping]] = ..., mass_cancel: _Optional[_Union[MassCancel, _Mapping]] = ...) -> None: ...

class StreamOrdersRequest(_message.Message):
    __slots__ = ("sequence", "commands")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    commands: _containers.RepeatedCompositeFieldContainer[OrderCommand]
    def __init__(self, sequence: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[OrderCommand, _Mapping]]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[_common_pb2.ExecutionReport, _Mapping]]] = ...) -> None: ...

class StreamOrdersResponse(_message.Message):
    __slots__ = ("sequence", "results")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    results: _containers.RepeatedCompositeFieldContainer[CommandResult]
    def __init__(self, sequence: _Optional[int] = ..., results: _Optional[_Iterable[_Union[CommandResult, _Mapping]]] = ...) -> None: ...

class SubscribeExecutionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeExecutionsResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[_common_pb2.ExecutionReport, _Mapping]]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _common_pb2.Order
    def __init__(self, order: _Optional[_Union[_common_pb2.Order, _Mapping]] = ...) -> None: ...

class GetOrdersRequest(_message.Message):
    __slots__ = ("order_ids",)
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    order_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, order_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class OrderLookup(_message.Message):
    __slots__ = ("order", "fenced")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    order: _common_pb2.Order
    fenced: bool
    def __init__(self, order: _Optional[_Union[_common_pb2.Order, _Mapping]] = ..., fenced: _Optional[bool] = ...) -> None: ...

class GetOrdersResponse(_message.Message):
    __slots__ = ("lookups",)
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    lookups: _containers.RepeatedCompositeFieldContainer[OrderLookup]
    def __init__(self, lookups: _Optional[_Iterable[_Union[OrderLookup, _Mapping]]] = ...) -> None: ...

class OrderToResolve(_message.Message):
    __slots__ = ("order_id", "account_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class ResolveOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[OrderToResolve]
    def __init__(self, orders: _Optional[_Iterable[_Union[OrderToResolve, _Mapping]]] = ...) -> None: ...

class OrderResolution(_message.Message):
    __slots__ = ("order_id", "resolution", "order")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    resolution: Resolution
    order: _common_pb2.Order
    def __init__(self, order_id: _Optional[str] = ..., resolution: _Optional[_Union[Resolution, str]] = ..., order: _Optional[_Union[_common_pb2.Order, _Mapping]] = ...) -> None: ...

class ResolveOrdersResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OrderResolution]
    def __init__(self, results: _Optional[_Iterable[_Union[OrderResolution, _Mapping]]] = ...) -> None: ...

class ReplaceToResolve(_message.Message):
    __slots__ = ("order_id", "account_id", "replace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    replace_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., replace_id: _Optional[str] = ...) -> None: ...

class ResolveReplacesRequest(_message.Message):
    __slots__ = ("replaces",)
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    replaces: _containers.RepeatedCompositeFieldContainer[ReplaceToResolve]
    def __init__(self, replaces: _Optional[_Iterable[_Union[ReplaceToResolve, _Mapping]]] = ...) -> None: ...

class ReplaceResolutionResult(_message.Message):
    __slots__ = ("order_id", "replace_id", "resolution", "order")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    replace_id: str
    resolution: ReplaceResolution
    order: _common_pb2.Order
    def __init__(self, order_id: _Optional[str] = ..., replace_id: _Optional[str] = ..., resolution: _Optional[_Union[ReplaceResolution, str]] = ..., order: _Optional[_Union[_common_pb2.Order, _Mapping]] = ...) -> None: ...

class ResolveReplacesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReplaceResolutionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReplaceResolutionResult, _Mapping]]] = ...) -> None: ...

class CreateInstrumentRequest(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ...) -> None: ...

class CreateInstrumentResponse(_message.Message):
    __slots__ = ("instrument",)
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ...) -> None: ...

class ListInstrumentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstrumentsResponse(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    def __init__(self, instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ...) -> None: ...

class GetOrderBookRequest(_message.Message):
    __slots__ = ("symbol", "depth")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    depth: int
    def __init__(self, symbol: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class PriceLevel(_message.Message):
    __slots__ = ("price_ticks", "quantity_lots", "order_count")
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    price_ticks: int
    quantity_lots: int
    order_count: int
    def __init__(self, price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., order_count: _Optional[int] = ...) -> None: ...

class GetOrderBookResponse(_message.Message):
    __slots__ = ("symbol", "bids", "asks")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    def __init__(self, symbol: _Optional[str] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ...) -> None: ...

class JournalRecord(_message.Message):
    __slots__ = ("sequence", "timestamp_ns", "instrument_created", "new_order", "cancel_order", "trade", "order_released", "order_fenced", "risk_epoch_changed", "replace_fenced", "replace_order", "order_replaced", "mass_cancel", "expire_orders", "set_instrument_status")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_CREATED_FIELD_NUMBER: _ClassVar[int]
    NEW_ORDER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    ORDER_RELEASED_FIELD_NUMBER: _ClassVar[int]
    ORDER_FENCED_FIELD_NUMBER: _ClassVar[int]
    RISK_EPOCH_CHANGED_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FENCED_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_REPLACED_FIELD_NUMBER: _ClassVar[int]
    MASS_CANCEL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_ORDERS_FIELD_NUMBER: _ClassVar[int]
    SET_INSTRUMENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    timestamp_ns: int
    instrument_created: _common_pb2.Instrument
    new_order: NewOrder
    cancel_order: CancelOrder
    trade: _common_pb2.Trade
    order_released: _common_pb2.OrderReleased
    order_fenced: _common_pb2.OrderFenced
    risk_epoch_changed: RiskEpochChanged
    replace_fenced: _common_pb2.ReplaceFenced
    replace_order: ReplaceOrder
    order_replaced: _common_pb2.OrderReplaced
    mass_cancel: MassCancel
    expire_orders: ExpireOrders
    set_instrument_status: SetInstrumentStatus
    def __init__(self, sequence: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., instrument_created: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., new_order: _Optional[_Union[NewOrder, _Mapping]] = ..., cancel_order: _Optional[_Union[CancelOrder, _Mapping]] = ..., trade: _Optional[_Union[_common_pb2.Trade, _Mapping]] = ..., order_released: _Optional[_Union[_common_pb2.OrderReleased, _Mapping]] = ..., order_fenced: _Optional[_Union[_common_pb2.OrderFenced, _Mapping]] = ..., risk_epoch_changed: _Optional[_Union[RiskEpochChanged, _Mapping]] = ..., replace_fenced: _Optional[_Union[_common_pb2.ReplaceFenced, _Mapping]] = ..., replace_order: _Optional[_Union[ReplaceOrder, _Mapping]] = ..., order_replaced: _Optional[_Union[_common_pb2.OrderReplaced, _Mapping]] = ..., mass_cancel: _Optional[_Union[MassCancel, _Mapping]] = ..., expire_orders: _Optional[_Union[ExpireOrders, _Mapping]] = ..., set_instrument_status: _Optional[_Union[SetInstrumentStatus, _Mapping]] = ...) -> None: ...

class StreamMarketDataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TradePrint(_message.Message):
    __slots__ = ("trade_id", "price_ticks", "quantity_lots", "aggressor_side", "timestamp_ns")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    AGGRESSOR_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    price_ticks: int
    quantity_lots: int
    aggressor_side: _common_pb2.Side
    timestamp_ns: int
    def __init__(self, trade_id: _Optional[int] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., aggressor_side: _Optional[_Union[_common_pb2.Side, str]] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class BookUpdate(_message.Message):
    __slots__ = ("symbol", "sequence", "snapshot", "bids", "asks", "trades", "timestamp_ns")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    sequence: int
    snapshot: bool
    bids: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    asks: _containers.RepeatedCompositeFieldContainer[PriceLevel]
    trades: _containers.RepeatedCompositeFieldContainer[TradePrint]
    timestamp_ns: int
    def __init__(self, symbol: _Optional[str] = ..., sequence: _Optional[int] = ..., snapshot: _Optional[bool] = ..., bids: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[PriceLevel, _Mapping]]] = ..., trades: _Optional[_Iterable[_Union[TradePrint, _Mapping]]] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class StreamMarketDataResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[BookUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[BookUpdate, _Mapping]]] = ...) -> None: ...

class GetEngineStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetEngineStateResponse(_message.Message):
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

class ListOpenOrdersRequest(_message.Message):
    __slots__ = ("account_id", "symbol", "limit", "after_created_ns", "after_order_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    AFTER_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    limit: int
    after_created_ns: int
    after_order_id: str
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., limit: _Optional[int] = ..., after_created_ns: _Optional[int] = ..., after_order_id: _Optional[str] = ...) -> None: ...

class ListOpenOrdersResponse(_message.Message):
    __slots__ = ("orders", "more")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_common_pb2.Order]
    more: bool
    def __init__(self, orders: _Optional[_Iterable[_Union[_common_pb2.Order, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class ListFillsRequest(_message.Message):
    __slots__ = ("account_id", "symbol", "start_timestamp_ns", "end_timestamp_ns", "start_trade_id", "end_trade_id", "limit", "after_trade_id", "after_side", "min_sequence")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    START_TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    END_TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    START_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    END_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SIDE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    symbol: str
    start_timestamp_ns: int
    end_timestamp_ns: int
    start_trade_id: int
    end_trade_id: int
    limit: int
    after_trade_id: int
    after_side: _common_pb2.Side
    min_sequence: int
    def __init__(self, account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., start_timestamp_ns: _Optional[int] = ..., end_timestamp_ns: _Optional[int] = ..., start_trade_id: _Optional[int] = ..., end_trade_id: _Optional[int] = ..., limit: _Optional[int] = ..., after_trade_id: _Optional[int] = ..., after_side: _Optional[_Union[_common_pb2.Side, str]] = ..., min_sequence: _Optional[int] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("trade_id", "order_id", "client_order_id", "account_id", "symbol", "side", "price_ticks", "quantity_lots", "fee", "liquidity_side", "timestamp_ns", "sequence")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    price_ticks: int
    quantity_lots: int
    fee: int
    liquidity_side: _common_pb2.LiquiditySide
    timestamp_ns: int
    sequence: int
    def __init__(self, trade_id: _Optional[int] = ..., order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., fee: _Optional[int] = ..., liquidity_side: _Optional[_Union[_common_pb2.LiquiditySide, str]] = ..., timestamp_ns: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class ListFillsResponse(_message.Message):
    __slots__ = ("fills", "more", "projected_sequence")
    FILLS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    PROJECTED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    more: bool
    projected_sequence: int
    def __init__(self, fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ..., more: _Optional[bool] = ..., projected_sequence: _Optional[int] = ...) -> None: ...

class ListExecutionsRequest(_message.Message):
    __slots__ = ("account_id", "from_sequence", "through_sequence", "limit", "last_only")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    THROUGH_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LAST_ONLY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    from_sequence: int
    through_sequence: int
    limit: int
    last_only: bool
    def __init__(self, account_id: _Optional[str] = ..., from_sequence: _Optional[int] = ..., through_sequence: _Optional[int] = ..., limit: _Optional[int] = ..., last_only: _Optional[bool] = ...) -> None: ...

class ListExecutionsResponse(_message.Message):
    __slots__ = ("reports", "last_account_sequence")
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCOUNT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExecutionReport]
    last_account_sequence: int
    def __init__(self, reports: _Optional[_Iterable[_Union[_common_pb2.ExecutionReport, _Mapping]]] = ..., last_account_sequence: _Optional[int] = ...) -> None: ...

class SetInstrumentStatusRequest(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: SetInstrumentStatus
    def __init__(self, command: _Optional[_Union[SetInstrumentStatus, _Mapping]] = ...) -> None: ...

class SetInstrumentStatusResponse(_message.Message):
    __slots__ = ("instrument", "changed", "journal_sequence")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    instrument: _common_pb2.Instrument
    changed: bool
    journal_sequence: int
    def __init__(self, instrument: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., changed: _Optional[bool] = ..., journal_sequence: _Optional[int] = ...) -> None: ...

class ExpireOrdersRequest(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: ExpireOrders
    def __init__(self, command: _Optional[_Union[ExpireOrders, _Mapping]] = ...) -> None: ...

class ExpireOrdersResponse(_message.Message):
    __slots__ = ("reports", "journal_sequence")
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExecutionReport]
    journal_sequence: int
    def __init__(self, reports: _Optional[_Iterable[_Union[_common_pb2.ExecutionReport, _Mapping]]] = ..., journal_sequence: _Optional[int] = ...) -> None: ...

class GetShardInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetShardInfoResponse(_message.Message):
    __slots__ = ("shard", "symbols")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    shard: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shard: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ...) -> None: ...

class ClientOrderKey(_message.Message):
    __slots__ = ("account_id", "client_order_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    client_order_id: str
    def __init__(self, account_id: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class FindClientOrdersRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ClientOrderKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ClientOrderKey, _Mapping]]] = ...) -> None: ...

class ClientOrderHolder(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _common_pb2.Order
    def __init__(self, order: _Optional[_Union[_common_pb2.Order, _Mapping]] = ...) -> None: ...

class FindClientOrdersResponse(_message.Message):
    __slots__ = ("holders", "orders_journaled", "calls_answered")
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_JOURNALED_FIELD_NUMBER: _ClassVar[int]
    CALLS_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    holders: _containers.RepeatedCompositeFieldContainer[ClientOrderHolder]
    orders_journaled: int
    calls_answered: int
    def __init__(self, holders: _Optional[_Iterable[_Union[ClientOrderHolder, _Mapping]]] = ..., orders_journaled: _Optional[int] = ..., calls_answered: _Optional[int] = ...) -> None: ...
