"""SettlementService: translates settlement.v1 messages to the ledger and back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, invalid_field, not_found
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from settlement import ledger
from settlement.ledger import LedgerError
from settlement.store import LedgerStore

# (risk event sequence, seconds the caller has left or None) -> whether risk applied it in time.
RiskLearned = Callable[[int, float | None], Awaitable[bool]]

log = structlog.get_logger("backbone.settlement")

INT64_MIN = -(1 << 63)


def _invalid(error: LedgerError) -> ServiceError:
    return invalid_field(error.field, error.reason, error.description)


def _int64(amount: int, what: str) -> int:
    if not INT64_MIN <= amount <= ledger.INT64_MAX:
        raise ServiceError(
            grpc.StatusCode.OUT_OF_RANGE,
            RejectReason.AMOUNT_OUT_OF_RANGE,
            f"{what} ({amount}) does not fit in a 64-bit amount",
        )
    return amount


def _batch_entries(
    source: str, request: settlement_pb2.StreamTradesRequest
) -> list[tuple[int, ledger.Entry]]:
    """Validate a batch: sequences positive and increasing, every trade postable."""
    batch: list[tuple[int, ledger.Entry]] = []
    previous = 0
    for index, item in enumerate(request.trades):
        path = f"trades[{index}]"
        if item.sequence <= previous:
            raise invalid_field(
                f"{path}.sequence",
                RejectReason.INVALID_SEQUENCE,
                "must be positive and increase within a batch",
            )
        previous = item.sequence
        if not item.HasField("trade"):
            raise invalid_field(f"{path}.trade", RejectReason.REQUIRED, "is required")
        try:
            batch.append(
                (item.sequence, ledger.trade_entry(source, ledger.fill_of(item.trade), f"{path}.trade"))
            )
        except LedgerError as error:
            raise _invalid(error) from None
    return batch


class SettlementServicer(settlement_pb2_grpc.SettlementServiceServicer):
    """The ledger's gRPC face; all state lives in the store."""

    def __init__(self, store: LedgerStore, risk_learned: RiskLearned | None = None) -> None:
        self.store = store
        # Waits (bounded by the caller's deadline) until risk has applied a ledger risk event.
        self._risk_learned = risk_learned

    async def StreamTrades(
        self,
        request_iterator: AsyncIterator[settlement_pb2.StreamTradesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[settlement_pb2.StreamTradesResponse]:
        source = ""
        applied = 0
        stream_log = log
        async for request in request_iterator:
            if not source:
                if request.trades:
                    raise invalid_field(
                        "trades",
                        RejectReason.HELLO_EXPECTED,
                        "the first request names the source and has no trades",
                    )
                try:
                    source = ledger.check_source(request.source)
                except LedgerError as error:
                    raise _invalid(error) from None
                applied = await self.store.applied_sequence(source)
                stream_log = log.bind(source=source)
                stream_log.info("trade stream opened", applied_sequence=applied)
                yield settlement_pb2.StreamTradesResponse(applied_sequence=applied)
                continue
            if request.source and request.source != source:
                raise invalid_field(
                    "source", RejectReason.SOURCE_CHANGED, f"this stream carries trades of {source} only"
                )
            sequences = [item.sequence for item in request.trades]
            try:
                applied = await self.store.post_trades(source, _batch_entries(source, request))
            except ServiceError as error:
                stream_log.error(
                    "trade batch refused; stopping the stream",
                    reason=error.reason,
                    error=error.message,
                    first_sequence=sequences[0] if sequences else None,
                    last_sequence=sequences[-1] if sequences else None,
                )
                raise
            yield settlement_pb2.StreamTradesResponse(applied_sequence=applied)

    async def CreateAsset(
        self, request: settlement_pb2.CreateAssetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.CreateAssetResponse:
        if not request.HasField("asset"):
            raise invalid_field("asset", RejectReason.REQUIRED, "is required")
        try:
            code = ledger.check_asset_code(request.asset.code, "asset.code")
            scale = ledger.check_scale(request.asset.scale, "asset.scale")
        except LedgerError as error:
            raise _invalid(error) from None
        row, _ = await self.store.create_asset(code, scale)
        return settlement_pb2.CreateAssetResponse(asset=settlement_pb2.Asset(code=row.code, scale=row.scale))

    async def ListAssets(
        self, request: settlement_pb2.ListAssetsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.ListAssetsResponse:
        rows = await self.store.list_assets()
        return settlement_pb2.ListAssetsResponse(
            assets=[settlement_pb2.Asset(code=row.code, scale=row.scale) for row in rows]
        )

    async def CreateAccount(
        self, request: settlement_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.CreateAccountResponse:
        try:
            account_id = ledger.check_account_id(request.account_id)
            digest = ledger.check_api_key_digest(request.api_key_sha256)
        except LedgerError as error:
            raise _invalid(error) from None
        await self.store.create_account(account_id, digest)
        return settlement_pb2.CreateAccountResponse(account_id=account_id)

    async def AuthenticateApiKey(
        self, request: settlement_pb2.AuthenticateApiKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.AuthenticateApiKeyResponse:
        try:
            digest = ledger.check_api_key_digest(request.api_key_sha256)
        except LedgerError as error:
            raise _invalid(error) from None
        account_id = await self.store.account_of_api_key(digest)
        if account_id is None:
            raise not_found(RejectReason.UNKNOWN_API_KEY, "no account has this API key")
        return settlement_pb2.AuthenticateApiKeyResponse(account_id=account_id)

    async def Deposit(
        self, request: settlement_pb2.DepositRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.DepositResponse:
        try:
            entry = ledger.deposit_entry(
                request.deposit_id, request.account_id, request.asset, request.amount
            )
        except LedgerError as error:
            raise _invalid(error) from None
        result = await self.store.deposit(request.deposit_id, entry)
        # Read your writes: answer once risk, which learns deposits from this ledger, has it.
        risk_applied = False
        if self._risk_learned is not None and result.risk_sequence:
            risk_applied = await self._risk_learned(result.risk_sequence, context.time_remaining())
        return settlement_pb2.DepositResponse(
            entry_id=result.entry_id,
            created=result.created,
            balance=_int64(result.balance, "balance"),
            risk_applied=risk_applied,
        )

    async def GetBalances(
        self, request: settlement_pb2.GetBalancesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.GetBalancesResponse:
        try:
            account_id = ledger.check_ledger_account(request.account_id)
        except LedgerError as error:
            raise _invalid(error) from None
        rows = await self.store.balances(account_id)
        if rows is None:
            raise not_found(
                RejectReason.UNKNOWN_ACCOUNT, f"account {account_id} does not exist", account_id=account_id
            )
        return settlement_pb2.GetBalancesResponse(
            account_id=account_id,
            balances=[
                settlement_pb2.Balance(
                    asset=row.asset, amount=_int64(row.amount, f"{row.asset} balance"), scale=row.scale
                )
                for row in rows
            ],
        )

    async def ListEntries(
        self, request: settlement_pb2.ListEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.ListEntriesResponse:
        try:
            account_id = ledger.check_ledger_account(request.account_id)
            limit = ledger.check_list_limit(request.limit)
        except LedgerError as error:
            raise _invalid(error) from None
        rows = await self.store.entries(account_id, limit)
        if rows is None:
            raise not_found(
                RejectReason.UNKNOWN_ACCOUNT, f"account {account_id} does not exist", account_id=account_id
            )
        return settlement_pb2.ListEntriesResponse(
            entries=[
                settlement_pb2.JournalEntry(
                    entry_id=row.entry_id,
                    kind=row.kind,
                    reference=row.reference,
                    created_ns=row.created_ns,
                    postings=[
                        settlement_pb2.Posting(account_id=p.account_id, asset=p.asset, amount=p.amount)
                        for p in row.postings
                    ],
                )
                for row in rows
            ]
        )
