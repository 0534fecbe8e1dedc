"""AdminService: assets, instruments, accounts and deposits (x-admin-key)."""

from __future__ import annotations

import secrets
from typing import Any

import structlog

from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, not_found
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from gateway.auth import api_key_digest, check_admin
from gateway.backends import Backends, GetBackends
from gateway.validation import (
    build_instrument,
    deposit_amount,
    validate_account_id_field,
    validate_create_asset,
    validate_create_instrument,
    validate_deposit,
)
from gateway.views import instrument_view, signed_minor_text

log = structlog.get_logger("backbone.gateway")

API_KEY_PREFIX = "bbk_"
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
        response = await backends.call(
            backends.trading.CreateInstrument,
            trading_pb2.CreateInstrumentRequest(instrument=instrument),
        )
        stored = response.instrument if response.HasField("instrument") else instrument
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
