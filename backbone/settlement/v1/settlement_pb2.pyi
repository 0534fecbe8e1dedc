from backbone.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SequencedTrade(_message.Message):
    __slots__ = ("sequence", "trade")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    trade: _common_pb2.Trade
    def __init__(self, sequence: _Optional[int] = ..., trade: _Optional[_Union[_common_pb2.Trade, _Mapping]] = ...) -> None: ...

class StreamTradesRequest(_message.Message):
    __slots__ = ("source", "trades")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    source: str
    trades: _containers.RepeatedCompositeFieldContainer[SequencedTrade]
    def __init__(self, source: _Optional[str] = ..., trades: _Optional[_Iterable[_Union[SequencedTrade, _Mapping]]] = ...) -> None: ...

class StreamTradesResponse(_message.Message):
    __slots__ = ("applied_sequence",)
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    applied_sequence: int
    def __init__(self, applied_sequence: _Optional[int] = ...) -> None: ...

class Asset(_message.Message):
    __slots__ = ("code", "scale")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    code: str
    scale: int
    def __init__(self, code: _Optional[str] = ..., scale: _Optional[int] = ...) -> None: ...

class CreateAssetRequest(_message.Message):
    __slots__ = ("asset",)
    ASSET_FIELD_NUMBER: _ClassVar[int]
    asset: Asset
    def __init__(self, asset: _Optional[_Union[Asset, _Mapping]] = ...) -> None: ...

class CreateAssetResponse(_message.Message):
    __slots__ = ("asset",)
    ASSET_FIELD_NUMBER: _ClassVar[int]
    asset: Asset
    def __init__(self, asset: _Optional[_Union[Asset, _Mapping]] = ...) -> None: ...

class ListAssetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAssetsResponse(_message.Message):
    __slots__ = ("assets",)
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    assets: _containers.RepeatedCompositeFieldContainer[Asset]
    def __init__(self, assets: _Optional[_Iterable[_Union[Asset, _Mapping]]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account_id", "api_key_sha256")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    api_key_sha256: bytes
    def __init__(self, account_id: _Optional[str] = ..., api_key_sha256: _Optional[bytes] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class AuthenticateApiKeyRequest(_message.Message):
    __slots__ = ("api_key_sha256",)
    API_KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    api_key_sha256: bytes
    def __init__(self, api_key_sha256: _Optional[bytes] = ...) -> None: ...

class AuthenticateApiKeyResponse(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class DepositRequest(_message.Message):
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

class DepositResponse(_message.Message):
    __slots__ = ("entry_id", "created", "balance", "risk_applied")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    RISK_APPLIED_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    created: bool
    balance: int
    risk_applied: bool
    def __init__(self, entry_id: _Optional[int] = ..., created: _Optional[bool] = ..., balance: _Optional[int] = ..., risk_applied: _Optional[bool] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("asset", "amount", "scale")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    asset: str
    amount: int
    scale: int
    def __init__(self, asset: _Optional[str] = ..., amount: _Optional[int] = ..., scale: _Optional[int] = ...) -> None: ...

class GetBalancesResponse(_message.Message):
    __slots__ = ("account_id", "balances")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    def __init__(self, account_id: _Optional[str] = ..., balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("account_id", "limit")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    limit: int
    def __init__(self, account_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Posting(_message.Message):
    __slots__ = ("account_id", "asset", "amount")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    asset: str
    amount: int
    def __init__(self, account_id: _Optional[str] = ..., asset: _Optional[str] = ..., amount: _Optional[int] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("entry_id", "kind", "reference", "postings", "created_ns")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    POSTINGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    entry_id: int
    kind: str
    reference: str
    postings: _containers.RepeatedCompositeFieldContainer[Posting]
    created_ns: int
    def __init__(self, entry_id: _Optional[int] = ..., kind: _Optional[str] = ..., reference: _Optional[str] = ..., postings: _Optional[_Iterable[_Union[Posting, _Mapping]]] = ..., created_ns: _Optional[int] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ...) -> None: ...

class ParkedTrade(_message.Message):
    __slots__ = ("source", "sequence", "trade", "reason", "detail", "account_ids", "parked_ns", "resolved_ns", "resolution", "entry_id", "reference")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    PARKED_NS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_NS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    sequence: int
    trade: _common_pb2.Trade
    reason: _common_pb2.RejectReason
    detail: str
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    parked_ns: int
    resolved_ns: int
    resolution: str
    entry_id: int
    reference: str
    def __init__(self, source: _Optional[str] = ..., sequence: _Optional[int] = ..., trade: _Optional[_Union[_common_pb2.Trade, _Mapping]] = ..., reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., detail: _Optional[str] = ..., account_ids: _Optional[_Iterable[str]] = ..., parked_ns: _Optional[int] = ..., resolved_ns: _Optional[int] = ..., resolution: _Optional[str] = ..., entry_id: _Optional[int] = ..., reference: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("account_id", "reason", "source", "trade_id", "halted_ns", "parked_trades")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    HALTED_NS_FIELD_NUMBER: _ClassVar[int]
    PARKED_TRADES_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reason: _common_pb2.RejectReason
    source: str
    trade_id: int
    halted_ns: int
    parked_trades: int
    def __init__(self, account_id: _Optional[str] = ..., reason: _Optional[_Union[_common_pb2.RejectReason, str]] = ..., source: _Optional[str] = ..., trade_id: _Optional[int] = ..., halted_ns: _Optional[int] = ..., parked_trades: _Optional[int] = ...) -> None: ...

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
    trade_id: int
    def __init__(self, source: _Optional[str] = ..., trade_id: _Optional[int] = ...) -> None: ...

class RetryParkedTradeResponse(_message.Message):
    __slots__ = ("posted", "halts_lifted", "halts")
    POSTED_FIELD_NUMBER: _ClassVar[int]
    HALTS_LIFTED_FIELD_NUMBER: _ClassVar[int]
    HALTS_FIELD_NUMBER: _ClassVar[int]
    posted: _containers.RepeatedCompositeFieldContainer[ParkedTrade]
    halts_lifted: _containers.RepeatedScalarFieldContainer[str]
    halts: _containers.RepeatedCompositeFieldContainer[AccountHalt]
    def __init__(self, posted: _Optional[_Iterable[_Union[ParkedTrade, _Mapping]]] = ..., halts_lifted: _Optional[_Iterable[str]] = ..., halts: _Optional[_Iterable[_Union[AccountHalt, _Mapping]]] = ...) -> None: ...
