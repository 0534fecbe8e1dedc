"""SettlementService: translates settlement.v1 messages to the ledger and back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, invalid_field, not_found
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from settlement import ledger
from settlement.ledger import LedgerError
from settlement.store import HaltRow, LedgerStore, ParkedTradeRow, TradeToPost

# (risk event sequence, seconds the caller has left or None) -> whether risk applied it in time.
RiskLearned = Callable[[int, float | None], Awaitable[bool]]

log = structlog.get_logger("backbone.settlement")

INT64_MIN = -(1 << 63)
_tuple = tuple.__new__  # makes a TradeToPost without its __new__'s Python frame

# Batches of one trade stream read ahead while the ledger posts (the sender keeps a window in flight),
# and the most trades posted in one transaction when several batches wait.
MAX_BATCHES_READ_AHEAD = 16
MAX_TRADES_PER_TRANSACTION = 4096
# Group commit: a transaction's worth smaller than GROUP_COMMIT_TRADES waits for more batches, at most
# GROUP_COMMIT_WAIT_SECONDS after its first one arrived. A post costs about the same whatever its size
# (seven statements and a commit), so under light or bursty flow (unary callers, orders one per
# message: trading's batches of a few trades each) few larger posts leave the CPU to the orders.
# What waits is the ledger's view only: risk learns of trades from trading directly and orders are
# answered before they settle.
GROUP_COMMIT_TRADES = 512
GROUP_COMMIT_WAIT_SECONDS = 0.02
_END = EOFError("the sender ended the stream")


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


def _batch_entries(source: str, request: settlement_pb2.StreamTradesRequest) -> list[TradeToPost]:
    """Validate a batch: sequences positive and increasing, every trade well-formed.

    A malformed trade refuses the batch (a bug in the sender); whether a well-formed trade can
    be posted on the ledger as it stands is the store's judgement (it parks the ones that cannot).
    """
    batch: list[TradeToPost] = []
    previous = 0
    for index, item in enumerate(request.trades):
        sequence = item.sequence
        if sequence <= previous:
            raise invalid_field(
                f"trades[{index}].sequence",
                RejectReason.INVALID_SEQUENCE,
                "must be positive and increase within a batch",
            )
        previous = sequence
        if not item.HasField("trade"):
            raise invalid_field(f"trades[{index}].trade", RejectReason.REQUIRED, "is required")
        trade = item.trade
        entry = ledger.well_formed_trade_entry(source, trade)
        if entry is None:
            try:
                entry = ledger.trade_entry(
                    source, ledger.fill_of(trade), f"trades[{index}].trade", source_checked=True
                )
            except LedgerError as error:
                raise _invalid(error) from None
        batch.append(_tuple(TradeToPost, (sequence, trade, entry)))
    return batch


def _trade_id(value: int, field: str = "trade_id") -> int:
    if value == 0:
        raise invalid_field(field, RejectReason.REQUIRED, "is required")
    if not 0 < value <= ledger.INT64_MAX:
        raise invalid_field(field, RejectReason.INVALID_TRADE_ID, "must be a positive whole number")
    return value


def _parked_trade(row: ParkedTradeRow) -> settlement_pb2.ParkedTrade:
    return settlement_pb2.ParkedTrade(
        source=row.source,
        sequence=row.sequence,
        trade=row.trade,
        reason=row.reason.number,
        detail=row.detail,
        account_ids=row.account_ids,
        parked_ns=row.parked_ns,
        resolved_ns=row.resolved_ns,
        resolution=row.resolution,
        entry_id=row.entry_id,
        reference=row.reference,
    )


def _halt(row: HaltRow) -> settlement_pb2.AccountHalt:
    return settlement_pb2.AccountHalt(
        account_id=row.account_id,
        reason=row.reason.number,
        source=row.source,
        trade_id=row.trade_id,
        halted_ns=row.halted_ns,
        parked_trades=row.parked_trades,
    )


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
        """The hello names the source; then every batch is posted and answered, in order.

        The sender keeps several batches in flight: the batches that are waiting when the ledger
        is free are posted together in one transaction (up to MAX_TRADES_PER_TRANSACTION trades;
        fewer than GROUP_COMMIT_TRADES wait up to GROUP_COMMIT_WAIT_SECONDS for more), then each is
        answered with the cursor after it. A malformed batch is refused after the
        ones before it are posted and answered.
        """
        requests = aiter(request_iterator)
        hello = await anext(requests, None)
        if hello is None:
            return
        if hello.trades:
            raise invalid_field(
                "trades", RejectReason.HELLO_EXPECTED, "the first request names the source and has no trades"
            )
        try:
            source = ledger.check_source(hello.source)
        except LedgerError as error:
            raise _invalid(error) from None
        applied = await self.store.applied_sequence(source)
        stream_log = log.bind(source=source)
        stream_log.info("trade stream opened", applied_sequence=applied)
        yield settlement_pb2.StreamTradesResponse(applied_sequence=applied)

        waiting: asyncio.Queue[settlement_pb2.StreamTradesRequest | BaseException | None] = asyncio.Queue(
            MAX_BATCHES_READ_AHEAD
        )

        async def read() -> None:
            try:
                async for request in requests:
                    await waiting.put(request)
            except Exception as error:  # the stream broke: end after what was read
                await waiting.put(error)
                return
            await waiting.put(None)

        reader = asyncio.create_task(read(), name=f"settlement-trades-{source}")
        loop = asyncio.get_running_loop()
        try:
            ended: BaseException | None = None  # _END, or the error the stream broke with
            while ended is None:
                # The batches waiting now (at least one), up to a transaction's worth of trades.
                group: list[settlement_pb2.StreamTradesRequest] = []
                trades = 0
                item = await waiting.get()
                deadline = loop.time() + GROUP_COMMIT_WAIT_SECONDS
                while True:
                    if item is None or isinstance(item, BaseException):
                        ended = _END if item is None else item
                        break
                    group.append(item)
                    trades += len(item.trades)
                    if trades >= MAX_TRADES_PER_TRANSACTION:
                        break
                    if not waiting.empty():
                        item = waiting.get_nowait()
                        continue
                    left = deadline - loop.time()
                    if trades >= GROUP_COMMIT_TRADES or left <= 0:
                        break
                    try:
                        # A get cancelled by the timeout leaves its item in the queue.
                        item = await asyncio.wait_for(waiting.get(), left)
                    except TimeoutError:
                        break
                batch: list[TradeToPost] = []
                valid = 0
                refusal: ServiceError | None = None
                for request in group:
                    try:
                        if request.source and request.source != source:
                            raise invalid_field(
                                "source",
                                RejectReason.SOURCE_CHANGED,
                                f"this stream carries trades of {source} only",
                            )
                        batch += _batch_entries(source, request)
                    except ServiceError as error:
                        refusal = error
                        stream_log.error(
                            "trade batch refused; stopping the stream",
                            reason=error.reason,
                            error=error.message,
                            first_sequence=request.trades[0].sequence if request.trades else None,
                        )
                        break
                    valid += 1
                if valid:
                    try:
                        result = await self.store.post_trades(source, batch)
                    except ServiceError as error:
                        stream_log.error(
                            "trade batch refused; stopping the stream",
                            reason=error.reason,
                            error=error.message,
                            first_sequence=batch[0].sequence if batch else None,
                            last_sequence=batch[-1].sequence if batch else None,
                        )
                        raise
                    applied = result.applied_sequence
                    for parked in result.parked:
                        stream_log.error(
                            "trade parked: the ledger cannot post it; its accounts are halted (their later "
                            "trades wait behind it) until an operator retries it (RetryParkedTrade)",
                            reference=parked.reference,
                            sequence=parked.sequence,
                            reason=parked.reason,
                            detail=parked.detail,
                            accounts=list(parked.accounts),
                        )
                    for _ in range(valid):
                        yield settlement_pb2.StreamTradesResponse(applied_sequence=applied)
                if refusal is not None:
                    raise refusal
            if ended is not _END:
                raise ended
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

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

    async def ListParkedTrades(
        self, request: settlement_pb2.ListParkedTradesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.ListParkedTradesResponse:
        try:
            account_id = ledger.check_account_id(request.account_id) if request.account_id else None
            limit = ledger.check_list_limit(request.limit)
        except LedgerError as error:
            raise _invalid(error) from None
        rows, parked = await self.store.parked_trades(
            account_id, include_resolved=request.include_resolved, limit=limit
        )
        return settlement_pb2.ListParkedTradesResponse(
            parked_trades=[_parked_trade(row) for row in rows], parked_count=parked
        )

    async def ListHaltedAccounts(
        self, request: settlement_pb2.ListHaltedAccountsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.ListHaltedAccountsResponse:
        return settlement_pb2.ListHaltedAccountsResponse(
            halts=[_halt(row) for row in await self.store.halts()]
        )

    async def RetryParkedTrade(
        self, request: settlement_pb2.RetryParkedTradeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> settlement_pb2.RetryParkedTradeResponse:
        try:
            source = ledger.check_source(request.source)
        except LedgerError as error:
            raise _invalid(error) from None
        result = await self.store.retry_parked_trade(source, _trade_id(request.trade_id))
        return settlement_pb2.RetryParkedTradeResponse(
            posted=[_parked_trade(row) for row in result.posted],
            halts_lifted=result.halts_lifted,
            halts=[_halt(row) for row in result.halts],
        )
