"""AdminService: assets, instruments (and their status), accounts, deposits, parked trades and the
end-of-day expiry of DAY orders (x-admin-key)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import structlog

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.money import InstrumentMath, format_minor
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, invalid_field, not_found
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from gateway.auth import api_key_digest, check_admin
from gateway.backends import Backends, GetBackends
from gateway.mass_cancel import check_symbol
from gateway.validation import (
    build_instrument,
    deposit_amount,
    trade_id_problem,
    validate_account_id_field,
    validate_create_asset,
    validate_create_instrument,
    validate_deposit,
    validate_symbol_field,
)
from gateway.views import instrument_view, order_view, signed_minor_text, timestamp_of

log = structlog.get_logger("backbone.gateway")

API_KEY_PREFIX = "bbk_"
# What SetInstrumentStatus may set.
SETTABLE_STATUSES = frozenset(
    {
        common_pb2.INSTRUMENT_STATUS_TRADING,
        common_pb2.INSTRUMENT_STATUS_HALTED,
        common_pb2.INSTRUMENT_STATUS_CLOSED,
    }
)
ACCOUNT_ID_PREFIX = "acc-"


def new_api_key() -> str:
    """A fresh API key: a recognisable prefix and 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_account_id() -> str:
    return ACCOUNT_ID_PREFIX + secrets.token_hex(6)


def _unknown_asset(code: str, field: str) -> ServiceError:
    return not_found(
        RejectReason.UNKNOWN_ASSET,
        f"{field}: there is no asset {code!r}; create it with CreateAsset first",
        asset=code,
        field=field,
    )


def _parked_trade_id(text: str) -> int:
    """A trade id given as text (as execution reports show it): a positive whole number."""
    if not text:
        raise invalid_field("trade_id", RejectReason.REQUIRED, "is required")
    problem = trade_id_problem(text)
    if problem:
        raise invalid_field("trade_id", RejectReason.INVALID_TRADE_ID, problem)
    return int(text)


def _check_source(source: str) -> str:
    if not source:
        raise invalid_field("source", RejectReason.REQUIRED, "is required")
    problem = ids.SOURCE.problem(source)
    if problem:
        raise invalid_field("source", ids.SOURCE.reason, problem)
    return source


async def _parked_view(backends: Backends, parked: settlement_pb2.ParkedTrade) -> gateway_pb2.ParkedTrade:
    """A parked trade with its amounts as decimals (empty where the asset or instrument is unknown)."""
    trade = parked.trade
    base_scale = await backends.assets.scale_of(trade.base_asset) if trade.base_asset else None
    quote_scale = await backends.assets.scale_of(trade.quote_asset) if trade.quote_asset else None
    instrument = await backends.instruments.get(trade.symbol) if trade.symbol else None

    def amount(value: int, scale: int | None) -> str:
        return "" if scale is None else format_minor(value, scale)

    view = gateway_pb2.ParkedTrade(
        source=parked.source,
        sequence=parked.sequence,
        trade_id=str(trade.trade_id),
        symbol=trade.symbol,
        buy_account_id=trade.buy_account_id,
        sell_account_id=trade.sell_account_id,
        base_asset=trade.base_asset,
        quote_asset=trade.quote_asset,
        base_amount=amount(trade.base_amount, base_scale),
        quote_amount=amount(trade.quote_amount, quote_scale),
        buyer_fee=amount(trade.buyer_fee, quote_scale),
        seller_fee=amount(trade.seller_fee, quote_scale),
        reason=parked.reason,
        detail=parked.detail,
        account_ids=parked.account_ids,
        resolution=parked.resolution,
    )
    if instrument is not None:
        math = InstrumentMath.of(instrument)
        view.price = math.price_text(trade.price_ticks)
        view.quantity = math.quantity_text(trade.quantity_lots)
    parked_at = timestamp_of(parked.parked_ns)
    if parked_at is not None:
        view.parked_at.CopyFrom(parked_at)
    resolved_at = timestamp_of(parked.resolved_ns)
    if resolved_at is not None:
        view.resolved_at.CopyFrom(resolved_at)
    return view


def _halt_view(halt: settlement_pb2.AccountHalt) -> gateway_pb2.AccountHalt:
    view = gateway_pb2.AccountHalt(
        account_id=halt.account_id,
        reason=halt.reason,
        source=halt.source,
        trade_id=str(halt.trade_id),
        parked_trades=halt.parked_trades,
    )
    halted_at = timestamp_of(halt.halted_ns)
    if halted_at is not None:
        view.halted_at.CopyFrom(halted_at)
    return view


class AdminServicer(gateway_pb2_grpc.AdminServiceServicer):
    """Set-up calls, refused unless the caller presents the configured admin key."""

    def __init__(self, backends: GetBackends) -> None:
        self._backends = backends

    def _admit(self, context: Any) -> Backends:
        backends = self._backends()
        check_admin(context.invocation_metadata(), backends.settings.admin_key)
        return backends

    async def CreateAsset(
        self, request: gateway_pb2.CreateAssetRequest, context: Any
    ) -> gateway_pb2.CreateAssetResponse:
        backends = self._admit(context)
        validate_create_asset(request)
        response = await backends.call(
            backends.settlement.CreateAsset,
            settlement_pb2.CreateAssetRequest(
                asset=settlement_pb2.Asset(code=request.code, scale=request.scale)
            ),
        )
        asset = response.asset if response.HasField("asset") else None
        code = asset.code if asset is not None and asset.code else request.code
        scale = asset.scale if asset is not None and asset.code else request.scale
        backends.assets.put(code, scale)
        log.info("asset created", asset=code, scale=scale)
        return gateway_pb2.CreateAssetResponse(code=code, scale=scale)

    async def CreateInstrument(
        self, request: gateway_pb2.CreateInstrumentRequest, context: Any
    ) -> gateway_pb2.CreateInstrumentResponse:
        backends = self._admit(context)
        fields = validate_create_instrument(request)
        base_scale = await backends.assets.scale_of(request.base_asset)
        if base_scale is None:
            raise _unknown_asset(request.base_asset, "base_asset")
        quote_scale = await backends.assets.scale_of(request.quote_asset)
        if quote_scale is None:
            raise _unknown_asset(request.quote_asset, "quote_asset")
        instrument = build_instrument(request, fields, base_scale=base_scale, quote_scale=quote_scale)
        # On the shard that has it already (the same definition again is a no-op), else on the one
        # shard that owns its symbol (FAILED_PRECONDITION, NO_SHARD_FOR_SYMBOL, when none does).
        shards = backends.trading_shards
        if await backends.instruments.get(instrument.symbol) is not None:
            shard = shards.of_symbol(instrument.symbol)
        else:
            shard = await shards.owner_of_new_symbol(instrument.symbol)
        response = await backends.call(
            shard.stub.CreateInstrument,
            trading_pb2.CreateInstrumentRequest(instrument=instrument),
        )
        stored = response.instrument if response.HasField("instrument") else instrument
        shards.learned_instrument(shard, stored)
        backends.instruments.put(stored)
        log.info("instrument created", symbol=stored.symbol)
        return gateway_pb2.CreateInstrumentResponse(instrument=instrument_view(stored))

    async def CreateAccount(
        self, request: gateway_pb2.CreateAccountRequest, context: Any
    ) -> gateway_pb2.CreateAccountResponse:
        backends = self._admit(context)
        if request.account_id:
            validate_account_id_field(request.account_id)
        account_id = request.account_id or new_account_id()
        api_key = new_api_key()
        await backends.call(
            backends.settlement.CreateAccount,
            settlement_pb2.CreateAccountRequest(
                account_id=account_id, api_key_sha256=api_key_digest(api_key)
            ),
        )
        log.info("account created", account_id=account_id)
        return gateway_pb2.CreateAccountResponse(account_id=account_id, api_key=api_key)

    async def Deposit(self, request: gateway_pb2.DepositRequest, context: Any) -> gateway_pb2.DepositResponse:
        backends = self._admit(context)
        validate_deposit(request)
        scale = await backends.assets.scale_of(request.asset)
        if scale is None:
            raise _unknown_asset(request.asset, "asset")
        amount = deposit_amount(request.amount, scale)
        posted = await backends.call(
            backends.settlement.Deposit,
            settlement_pb2.DepositRequest(
                deposit_id=request.deposit_id,
                account_id=request.account_id,
                asset=request.asset,
                amount=amount,
            ),
        )
        # Risk learns the deposit from the ledger itself (settlement's outbox), exactly once;
        # settlement answers once risk has it, or says it could not wait that long.
        log.info(
            "deposit posted",
            deposit_id=request.deposit_id,
            account_id=request.account_id,
            asset=request.asset,
            created=posted.created,
            risk_applied=posted.risk_applied,
        )
        return gateway_pb2.DepositResponse(
            created=posted.created, balance=signed_minor_text(posted.balance, scale)
        )

    async def ListParkedTrades(
        self, request: gateway_pb2.ListParkedTradesRequest, context: Any
    ) -> gateway_pb2.ListParkedTradesResponse:
        backends = self._admit(context)
        if request.account_id:
            validate_account_id_field(request.account_id)
        # The limit's range is settlement's rule: its refusal (INVALID_LIMIT, field "limit") is relayed.
        listed = await backends.call(
            backends.settlement.ListParkedTrades,
            settlement_pb2.ListParkedTradesRequest(
                account_id=request.account_id, include_resolved=request.include_resolved, limit=request.limit
            ),
        )
        return gateway_pb2.ListParkedTradesResponse(
            parked_trades=[await _parked_view(backends, parked) for parked in listed.parked_trades],
            parked_count=listed.parked_count,
        )

    async def ListHaltedAccounts(
        self, request: gateway_pb2.ListHaltedAccountsRequest, context: Any
    ) -> gateway_pb2.ListHaltedAccountsResponse:
        backends = self._admit(context)
        listed = await backends.call(
            backends.settlement.ListHaltedAccounts, settlement_pb2.ListHaltedAccountsRequest()
        )
        return gateway_pb2.ListHaltedAccountsResponse(halts=[_halt_view(halt) for halt in listed.halts])

    async def RetryParkedTrade(
        self, request: gateway_pb2.RetryParkedTradeRequest, context: Any
    ) -> gateway_pb2.RetryParkedTradeResponse:
        backends = self._admit(context)
        source = _check_source(request.source)
        trade_id = _parked_trade_id(request.trade_id)
        retried = await backends.call(
            backends.settlement.RetryParkedTrade,
            settlement_pb2.RetryParkedTradeRequest(source=source, trade_id=trade_id),
        )
        log.info(
            "parked trade retried",
            source=source,
            trade_id=trade_id,
            posted=[parked.reference for parked in retried.posted],
            halts_lifted=list(retried.halts_lifted),
        )
        return gateway_pb2.RetryParkedTradeResponse(
            posted=[await _parked_view(backends, parked) for parked in retried.posted],
            halts_lifted=retried.halts_lifted,
            halts=[_halt_view(halt) for halt in retried.halts],
        )

    async def GetEngineState(
        self, request: gateway_pb2.GetEngineStateRequest, context: Any
    ) -> gateway_pb2.GetEngineStateResponse:
        backends = self._admit(context)
        shards = backends.trading_shards
        if request.shard:
            problem = ids.source_problem(request.shard)
            if problem:
                raise invalid_field("shard", RejectReason.INVALID_SOURCE, problem)
            targets = [shards.named(request.shard)]
        else:
            targets = list(shards.all)
        states = await asyncio.gather(
            *(
                backends.call(shard.stub.GetEngineState, trading_pb2.GetEngineStateRequest())
                for shard in targets
            )
        )
        return gateway_pb2.GetEngineStateResponse(
            shards=[
                gateway_pb2.EngineState(
                    shard=state.shard,
                    journal_sequence=state.journal_sequence,
                    state_hash=state.state_hash,
                    open_orders=state.open_orders,
                    orders=state.orders,
                    instruments=state.instruments,
                )
                for state in states
            ]
        )

    async def SetInstrumentStatus(
        self, request: gateway_pb2.SetInstrumentStatusRequest, context: Any
    ) -> gateway_pb2.SetInstrumentStatusResponse:
        backends = self._admit(context)
        validate_symbol_field(request.symbol)
        if request.status not in SETTABLE_STATUSES:
            raise invalid_field(
                "status",
                RejectReason.INVALID_INSTRUMENT_STATUS,
                "must be INSTRUMENT_STATUS_TRADING, INSTRUMENT_STATUS_HALTED or INSTRUMENT_STATUS_CLOSED",
            )
        if await backends.instruments.get(request.symbol) is None:
            raise not_found(
                RejectReason.UNKNOWN_SYMBOL,
                f"there is no instrument {request.symbol!r}",
                symbol=request.symbol,
            )
        answer = await backends.call(
            backends.trading_shards.of_symbol(request.symbol).stub.SetInstrumentStatus,
            trading_pb2.SetInstrumentStatusRequest(
                command=trading_pb2.SetInstrumentStatus(symbol=request.symbol, status=request.status)
            ),
        )
        backends.instruments.put(answer.instrument)  # ListInstruments shows the status at once
        log.info(
            "instrument status set",
            symbol=request.symbol,
            status=common_pb2.InstrumentStatus.Name(request.status),
            changed=answer.changed,
        )
        return gateway_pb2.SetInstrumentStatusResponse(
            instrument=instrument_view(answer.instrument), changed=answer.changed
        )

    async def ExpireDayOrders(
        self, request: gateway_pb2.ExpireDayOrdersRequest, context: Any
    ) -> gateway_pb2.ExpireDayOrdersResponse:
        backends = self._admit(context)
        await check_symbol(backends, request.symbol)
        shards = backends.trading_shards
        # A symbol's DAY orders are on its shard; every symbol's on every shard.
        targets = [shards.of_symbol(request.symbol)] if request.symbol else list(shards.all)
        command = trading_pb2.ExpireOrders(symbol=request.symbol, time_in_force=common_pb2.TIME_IN_FORCE_DAY)
        answers = await asyncio.gather(
            *(
                backends.call(shard.stub.ExpireOrders, trading_pb2.ExpireOrdersRequest(command=command))
                for shard in targets
            )
        )
        reports = [report for answer in answers for report in answer.reports]
        backends.reported.note(reports)
        orders = []
        for report in reports:
            instrument = await backends.instruments.get(report.order.symbol)
            if instrument is not None:  # trading made the order, so it knows the instrument
                orders.append(order_view(report.order, instrument))
        log.info("day orders expired", symbol=request.symbol or "*", orders=len(reports))
        return gateway_pb2.ExpireDayOrdersResponse(expired_count=len(reports), orders=orders)
