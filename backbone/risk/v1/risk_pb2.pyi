from backbone.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reserve(_message.Message):
    __slots__ = ("order_id", "account_id", "symbol", "side", "price_ticks", "quantity_lots")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    price_ticks: int
    quantity_lots: int
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("order_id", "account_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class ReservationCommand(_message.Message):
    __slots__ = ("reserve", "release")
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    reserve: Reserve
    release: Release
    def __init__(self, reserve: _Optional[_Union[Reserve, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class StreamReservationsRequest(_message.Message):
    __slots__ = ("sequence", "commands")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    commands: _containers.RepeatedCompositeFieldContainer[ReservationCommand]
    def __init__(self, sequence: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[ReservationCommand, _Mapping]]] = ...) -> None: ...

class ReservationResult(_message.Message):
    __slots__ = ("order_id", "accepted", "reject_reason", "asset", "amount")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    accepted: bool
    reject_reason: _common_pb2.RejectReason
    asset: str
    amount: int
    def __init__(self, order_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reject_reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class StreamReservationsResponse(_message.Message):
    __slots__ = ("sequence", "results")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    results: _containers.RepeatedCompositeFieldContainer[ReservationResult]
    def __init__(self, sequence: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ReservationResult, _Mapping]]] = ...) -> None: ...

class TradingEvent(_message.Message):
    __slots__ = ("sequence", "trade", "order_released", "instrument_created")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    ORDER_RELEASED_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_CREATED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    trade: _common_pb2.Trade
    order_released: _common_pb2.OrderReleased
    instrument_created: _common_pb2.Instrument
    def __init__(self, sequence: _Optional[int] = ..., trade: _Optional[_Union[_common_pb2.Trade, _Mapping]] = ..., order_released: _Optional[_Union[_common_pb2.OrderReleased, _Mapping]] = ..., instrument_created: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ...) -> None: ...

class StreamTradingEventsRequest(_message.Message):
    __slots__ = ("source", "events")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    source: str
    events: _containers.RepeatedCompositeFieldContainer[TradingEvent]
    def __init__(self, source: _Optional[str] = ..., events: _Optional[_Iterable[_Union[TradingEvent, _Mapping]]] = ...) -> None: ...

class StreamTradingEventsResponse(_message.Message):
    __slots__ = ("applied_sequence",)
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    applied_sequence: int
    def __init__(self, applied_sequence: _Optional[int] = ...) -> None: ...

class ApplyDepositRequest(_message.Message):
    __slots__ = ("deposit_id", "account_id", "asset", "amount")
    DEPOSIT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    deposit_id: str
    account_id: str
    asset: str
    amount: int
    def __init__(self, deposit_id: _Optional[str] = ..., account_id: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class ApplyDepositResponse(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    def __init__(self, applied: _Optional[bool] = ...) -> None: ...

class GetAccountRiskRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class AssetExposure(_message.Message):
    __slots__ = ("asset", "total", "reserved", "available")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    asset: str
    total: int
    reserved: int
    available: int
    def __init__(self, asset: _Optional[str] = ..., total: _Optional[int] = ..., reserved: _Optional[int] = ..., available: _Optional[int] = ...) -> None: ...

class GetAccountRiskResponse(_message.Message):
    __slots__ = ("account_id", "assets")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    assets: _containers.RepeatedCompositeFieldContainer[AssetExposure]
    def __init__(self, account_id: _Optional[str] = ..., assets: _Optional[_Iterable[_Union[AssetExposure, _Mapping]]] = ...) -> None: ...
