from backbone.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientOrderIdClaim(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_ORDER_ID_CLAIM_UNSPECIFIED: _ClassVar[ClientOrderIdClaim]
    CLIENT_ORDER_ID_CLAIM_CLAIMED: _ClassVar[ClientOrderIdClaim]
    CLIENT_ORDER_ID_CLAIM_FREE: _ClassVar[ClientOrderIdClaim]
    CLIENT_ORDER_ID_CLAIM_HELD: _ClassVar[ClientOrderIdClaim]

class LedgerEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEDGER_EVENT_KIND_UNSPECIFIED: _ClassVar[LedgerEventKind]
    LEDGER_EVENT_KIND_BALANCE: _ClassVar[LedgerEventKind]
    LEDGER_EVENT_KIND_HALT: _ClassVar[LedgerEventKind]
    LEDGER_EVENT_KIND_RESUME: _ClassVar[LedgerEventKind]
CLIENT_ORDER_ID_CLAIM_UNSPECIFIED: ClientOrderIdClaim
CLIENT_ORDER_ID_CLAIM_CLAIMED: ClientOrderIdClaim
CLIENT_ORDER_ID_CLAIM_FREE: ClientOrderIdClaim
CLIENT_ORDER_ID_CLAIM_HELD: ClientOrderIdClaim
LEDGER_EVENT_KIND_UNSPECIFIED: LedgerEventKind
LEDGER_EVENT_KIND_BALANCE: LedgerEventKind
LEDGER_EVENT_KIND_HALT: LedgerEventKind
LEDGER_EVENT_KIND_RESUME: LedgerEventKind

class Reserve(_message.Message):
    __slots__ = ("order_id", "account_id", "symbol", "side", "price_ticks", "quantity_lots", "quote_budget", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_LOTS_FIELD_NUMBER: _ClassVar[int]
    QUOTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    price_ticks: int
    quantity_lots: int
    quote_budget: int
    client_order_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price_ticks: _Optional[int] = ..., quantity_lots: _Optional[int] = ..., quote_budget: _Optional[int] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("order_id", "account_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class GrowForReplace(_message.Message):
    __slots__ = ("order_id", "account_id", "symbol", "side", "price_ticks", "leaves_lots", "replace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_TICKS_FIELD_NUMBER: _ClassVar[int]
    LEAVES_LOTS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    symbol: str
    side: _common_pb2.Side
    price_ticks: int
    leaves_lots: int
    replace_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., price_ticks: _Optional[int] = ..., leaves_lots: _Optional[int] = ..., replace_id: _Optional[str] = ...) -> None: ...

class EndReplace(_message.Message):
    __slots__ = ("order_id", "account_id", "replace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    replace_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., replace_id: _Optional[str] = ...) -> None: ...

class ReservationCommand(_message.Message):
    __slots__ = ("reserve", "release", "grow_for_replace", "end_replace")
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    GROW_FOR_REPLACE_FIELD_NUMBER: _ClassVar[int]
    END_REPLACE_FIELD_NUMBER: _ClassVar[int]
    reserve: Reserve
    release: Release
    grow_for_replace: GrowForReplace
    end_replace: EndReplace
    def __init__(self, reserve: _Optional[_Union[Reserve, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., grow_for_replace: _Optional[_Union[GrowForReplace, _Mapping]] = ..., end_replace: _Optional[_Union[EndReplace, _Mapping]] = ...) -> None: ...

class StreamReservationsRequest(_message.Message):
    __slots__ = ("sequence", "commands")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    commands: _containers.RepeatedCompositeFieldContainer[ReservationCommand]
    def __init__(self, sequence: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[ReservationCommand, _Mapping]]] = ...) -> None: ...

class ReservationResult(_message.Message):
    __slots__ = ("order_id", "accepted", "reject_reason", "asset", "amount", "epoch", "client_order_id_claim", "client_order_id_holder", "client_order_id_ttl_ms")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_CLAIM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_HOLDER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    accepted: bool
    reject_reason: _common_pb2.RejectReason
    asset: str
    amount: int
    epoch: str
    client_order_id_claim: ClientOrderIdClaim
    client_order_id_holder: str
    client_order_id_ttl_ms: int
    def __init__(self, order_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reject_reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ..., epoch: _Optional[str] = ..., client_order_id_claim: _Optional[_Union[ClientOrderIdClaim, str]] = ..., client_order_id_holder: _Optional[str] = ..., client_order_id_ttl_ms: _Optional[int] = ...) -> None: ...

class StreamReservationsResponse(_message.Message):
    __slots__ = ("sequence", "results")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    results: _containers.RepeatedCompositeFieldContainer[ReservationResult]
    def __init__(self, sequence: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ReservationResult, _Mapping]]] = ...) -> None: ...

class TradingEvent(_message.Message):
    __slots__ = ("sequence", "trade", "order_released", "instrument_created", "order_fenced", "order_replaced", "risk_epoch_changed", "replace_fenced")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    ORDER_RELEASED_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_CREATED_FIELD_NUMBER: _ClassVar[int]
    ORDER_FENCED_FIELD_NUMBER: _ClassVar[int]
    ORDER_REPLACED_FIELD_NUMBER: _ClassVar[int]
    RISK_EPOCH_CHANGED_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FENCED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    trade: _common_pb2.Trade
    order_released: _common_pb2.OrderReleased
    instrument_created: _common_pb2.Instrument
    order_fenced: _common_pb2.OrderFenced
    order_replaced: _common_pb2.OrderReplaced
    risk_epoch_changed: RiskEpochChanged
    replace_fenced: _common_pb2.ReplaceFenced
    def __init__(self, sequence: _Optional[int] = ..., trade: _Optional[_Union[_common_pb2.Trade, _Mapping]] = ..., order_released: _Optional[_Union[_common_pb2.OrderReleased, _Mapping]] = ..., instrument_created: _Optional[_Union[_common_pb2.Instrument, _Mapping]] = ..., order_fenced: _Optional[_Union[_common_pb2.OrderFenced, _Mapping]] = ..., order_replaced: _Optional[_Union[_common_pb2.OrderReplaced, _Mapping]] = ..., risk_epoch_changed: _Optional[_Union[RiskEpochChanged, _Mapping]] = ..., replace_fenced: _Optional[_Union[_common_pb2.ReplaceFenced, _Mapping]] = ...) -> None: ...

class RiskEpochChanged(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    def __init__(self, epoch: _Optional[str] = ...) -> None: ...

class TradingSnapshot(_message.Message):
    __slots__ = ("sequence", "orders", "instruments", "last", "epoch")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    orders: _containers.RepeatedCompositeFieldContainer[_common_pb2.Order]
    instruments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Instrument]
    last: bool
    epoch: str
    def __init__(self, sequence: _Optional[int] = ..., orders: _Optional[_Iterable[_Union[_common_pb2.Order, _Mapping]]] = ..., instruments: _Optional[_Iterable[_Union[_common_pb2.Instrument, _Mapping]]] = ..., last: _Optional[bool] = ..., epoch: _Optional[str] = ...) -> None: ...

class StreamTradingEventsRequest(_message.Message):
    __slots__ = ("source", "events", "snapshot")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    source: str
    events: _containers.RepeatedCompositeFieldContainer[TradingEvent]
    snapshot: TradingSnapshot
    def __init__(self, source: _Optional[str] = ..., events: _Optional[_Iterable[_Union[TradingEvent, _Mapping]]] = ..., snapshot: _Optional[_Union[TradingSnapshot, _Mapping]] = ...) -> None: ...

class StreamTradingEventsResponse(_message.Message):
    __slots__ = ("applied_sequence", "snapshot_wanted", "epoch")
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_WANTED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    applied_sequence: int
    snapshot_wanted: bool
    epoch: str
    def __init__(self, applied_sequence: _Optional[int] = ..., snapshot_wanted: _Optional[bool] = ..., epoch: _Optional[str] = ...) -> None: ...

class LedgerEvent(_message.Message):
    __slots__ = ("sequence", "account_id", "asset", "amount", "entry_id", "kind")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    account_id: str
    asset: str
    amount: int
    entry_id: int
    kind: LedgerEventKind
    def __init__(self, sequence: _Optional[int] = ..., account_id: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ..., entry_id: _Optional[int] = ..., kind: _Optional[_Union[LedgerEventKind, str]] = ...) -> None: ...

class LedgerBalance(_message.Message):
    __slots__ = ("account_id", "asset", "amount")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    asset: str
    amount: int
    def __init__(self, account_id: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class TradeCursor(_message.Message):
    __slots__ = ("source", "applied_sequence")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    applied_sequence: int
    def __init__(self, source: _Optional[str] = ..., applied_sequence: _Optional[int] = ...) -> None: ...

class LedgerSnapshot(_message.Message):
    __slots__ = ("sequence", "balances", "trade_cursors", "last", "halted_accounts")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    TRADE_CURSORS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    HALTED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    balances: _containers.RepeatedCompositeFieldContainer[LedgerBalance]
    trade_cursors: _containers.RepeatedCompositeFieldContainer[TradeCursor]
    last: bool
    halted_accounts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sequence: _Optional[int] = ..., balances: _Optional[_Iterable[_Union[LedgerBalance, _Mapping]]] = ..., trade_cursors: _Optional[_Iterable[_Union[TradeCursor, _Mapping]]] = ..., last: _Optional[bool] = ..., halted_accounts: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamLedgerEventsRequest(_message.Message):
    __slots__ = ("source", "events", "snapshot")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    source: str
    events: _containers.RepeatedCompositeFieldContainer[LedgerEvent]
    snapshot: LedgerSnapshot
    def __init__(self, source: _Optional[str] = ..., events: _Optional[_Iterable[_Union[LedgerEvent, _Mapping]]] = ..., snapshot: _Optional[_Union[LedgerSnapshot, _Mapping]] = ...) -> None: ...

class StreamLedgerEventsResponse(_message.Message):
    __slots__ = ("applied_sequence", "snapshot_wanted")
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_WANTED_FIELD_NUMBER: _ClassVar[int]
    applied_sequence: int
    snapshot_wanted: bool
    def __init__(self, applied_sequence: _Optional[int] = ..., snapshot_wanted: _Optional[bool] = ...) -> None: ...

class GetAccountRiskRequest(_message.Message):
    __slots__ = ("account_id", "source", "min_sequence")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    source: str
    min_sequence: int
    def __init__(self, account_id: _Optional[str] = ..., source: _Optional[str] = ..., min_sequence: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("account_id", "assets", "applied_sequence")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    assets: _containers.RepeatedCompositeFieldContainer[AssetExposure]
    applied_sequence: int
    def __init__(self, account_id: _Optional[str] = ..., assets: _Optional[_Iterable[_Union[AssetExposure, _Mapping]]] = ..., applied_sequence: _Optional[int] = ...) -> None: ...

class ListReservationsRequest(_message.Message):
    __slots__ = ("page_token", "page_size", "older_than_ms")
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_MS_FIELD_NUMBER: _ClassVar[int]
    page_token: str
    page_size: int
    older_than_ms: int
    def __init__(self, page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., older_than_ms: _Optional[int] = ...) -> None: ...

class HeldReservation(_message.Message):
    __slots__ = ("order_id", "account_id", "symbol", "asset", "amount", "reserved_at_ms", "replace_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account_id: str
    symbol: str
    asset: str
    amount: int
    reserved_at_ms: int
    replace_id: str
    def __init__(self, order_id: _Optional[str] = ..., account_id: _Optional[str] = ..., symbol: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ..., reserved_at_ms: _Optional[int] = ..., replace_id: _Optional[str] = ...) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("reservations", "next_page_token")
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reservations: _containers.RepeatedCompositeFieldContainer[HeldReservation]
    next_page_token: str
    def __init__(self, reservations: _Optional[_Iterable[_Union[HeldReservation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
