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
