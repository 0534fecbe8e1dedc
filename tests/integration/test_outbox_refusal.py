"""Trading's outbox to settlement, refused by its receiver: said at ERROR once, shown in trading's health.

Trading runs in process (real journal in PostgreSQL) against stand-ins for settlement and risk
served by the same runtime. Settlement refuses every trade batch with FAILED_PRECONDITION until it
is "fixed"; meanwhile trading keeps matching orders, its outbox entry in the standard health
service is NOT_SERVING with the refused sequence, the reason and the lag, and it is SERVING again
once the trade is delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from typing import Any

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from backbone.runtime.config import Settings
from backbone.runtime.errors import failed_precondition
from backbone.runtime.server import RunningServer
from backbone.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from ops.cli import main as cli_main
from ops.supervisor import health_check
from tests.instruments import btc_usd
from tests.waiting import eventually, health_of
from trading.app import SERVICE_NAME, create_app, outbox_health_name

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SETTLEMENT_ENTRY = outbox_health_name("settlement-trades")
RISK_ENTRY = outbox_health_name("risk-trading-events")


class Settlement(settlement_pb2_grpc.SettlementServiceServicer):
    """Stands in for settlement: applies trades, or refuses every batch while `refusing`."""

    def __init__(self) -> None:
        self.refusing = True
        self.applied = 0
        self.refused_first_sequences: list[int] = []

    async def StreamTrades(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            sequences = [item.sequence for item in request.trades]
            if sequences and self.refusing:
                self.refused_first_sequences.append(sequences[0])
                raise failed_precondition(
                    RejectReason.NEGATIVE_BALANCE, f"trade {sequences[0]} would overdraw account b"
                )
            self.applied = max([self.applied, *sequences])
            yield settlement_pb2.StreamTradesResponse(applied_sequence=self.applied)


class Risk(risk_pb2_grpc.RiskServiceServicer):
    """Stands in for risk: acknowledges every trading event."""

    def __init__(self) -> None:
        self.applied = 0

    async def StreamTradingEvents(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            self.applied = max([self.applied, *(event.sequence for event in request.events)])
            yield risk_pb2.StreamTradingEventsResponse(applied_sequence=self.applied)


class StandIn:
    """A stand-in servicer served by the service runtime (so refusals carry their ErrorInfo)."""

    def __init__(self, name: str, add: Callable[[Any, grpc.aio.Server], None], servicer: Any) -> None:
        self.name = name
        self._add = add
        self._servicer = servicer

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        self._add(self._servicer, server)
        return []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def settings(**environment: str) -> Settings:
    return Settings.from_env(
        {
            "BACKBONE_TRADING_SHARD": "trading-refusal-test",
            "BACKBONE_GRACE_PERIOD_SECONDS": "1",
            "BACKBONE_DATABASE_POOL_SIZE": "4",
            **environment,
        }
    )


def new_order(
    order_id: str, side: int, price_ticks: int, lots: int, account: str
) -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(
        new_order=trading_pb2.NewOrder(
            order_id=order_id,
            client_order_id=f"c-{order_id}",
            account_id=account,
            symbol="BTC-USD",
            side=side,  # type: ignore[arg-type]
            price_ticks=price_ticks,
            quantity_lots=lots,
        )
    )


async def test_trading_reports_a_refused_settlement_outbox_in_its_health(
    new_database: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    settlement, risk = Settlement(), Risk()
    stand_ins = [
        RunningServer(
            StandIn("settlement", settlement_pb2_grpc.add_SettlementServiceServicer_to_server, settlement),
            settings(),
        ),
        RunningServer(StandIn("risk", risk_pb2_grpc.add_RiskServiceServicer_to_server, risk), settings()),
    ]
    for server in stand_ins:
        await server.start("127.0.0.1:0")
    trading_settings = settings(
        BACKBONE_DATABASE_URL=new_database(),
        BACKBONE_SETTLEMENT_ADDRESS=f"127.0.0.1:{stand_ins[0].port}",
        BACKBONE_RISK_ADDRESS=f"127.0.0.1:{stand_ins[1].port}",
    )
    trading = RunningServer(create_app(trading_settings), trading_settings)
    with structlog.testing.capture_logs() as lines:

        def refusal_errors() -> list[MutableMapping[str, Any]]:
            return [
                line
                for line in lines
                if line["log_level"] == "error" and line.get("outbox") == "settlement-trades"
            ]

        await trading.start("127.0.0.1:0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{trading.port}") as channel:
                for entry in (SETTLEMENT_ENTRY, RISK_ENTRY):
                    status, detail = await health_of(channel, entry)
                    assert status == SERVING and detail.startswith("delivering; "), (entry, detail)

                stub = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
                await stub.CreateInstrument(trading_pb2.CreateInstrumentRequest(instrument=btc_usd()))
                orders = stub.StreamOrders()
                await orders.write(
                    trading_pb2.StreamOrdersRequest(
                        sequence=1,
                        commands=[
                            new_order("s", common_pb2.SIDE_SELL, 100, 3, "a"),
                            new_order("b", common_pb2.SIDE_BUY, 100, 1, "b"),
                        ],
                    )
                )
                await orders.read()
                await eventually(
                    lambda: len(settlement.refused_first_sequences) >= 3, "three refused batches"
                )
                trade_sequence = settlement.refused_first_sequences[0]

                async def stalled() -> str:
                    status, detail = await health_of(channel, SETTLEMENT_ENTRY)
                    return detail if status == NOT_SERVING else ""

                detail = await eventually(stalled, "the settlement outbox entry NOT_SERVING")
                assert f"the receiver refused sequence {trade_sequence} " in detail
                assert (
                    f"FAILED_PRECONDITION NEGATIVE_BALANCE: trade {trade_sequence} would overdraw" in detail
                )
                assert "lag " in detail and ", lag 0" not in detail
                # An operator sees the same with `backbone health ADDRESS --service ENTRY` (exit 1).
                address = f"127.0.0.1:{trading.port}"
                cli_status, cli_detail = await asyncio.to_thread(health_check, address, SETTLEMENT_ENTRY, 5.0)
                assert cli_status == NOT_SERVING and f"refused sequence {trade_sequence} " in cli_detail
                exit_code = await asyncio.to_thread(
                    cli_main, ["health", address, "--service", SETTLEMENT_ENTRY]
                )
                assert exit_code == 1
                printed = capsys.readouterr().out.splitlines()[-1]
                assert printed.startswith("NOT SERVING: stalled for ")
                assert f"the receiver refused sequence {trade_sequence} " in printed
                # Trading itself still serves, and so does the outbox to risk.
                assert (await health_of(channel, SERVICE_NAME))[0] == SERVING
                assert (await health_of(channel, ""))[0] == SERVING
                assert (await health_of(channel, RISK_ENTRY))[0] == SERVING

                # It kept matching: a second trade is journaled while the first is refused.
                await orders.write(
                    trading_pb2.StreamOrdersRequest(
                        sequence=2, commands=[new_order("c", common_pb2.SIDE_BUY, 100, 2, "c")]
                    )
                )
                await orders.read()

                errors = refusal_errors()
                assert len(errors) == 1  # rate-limited: one line, however many retries
                assert errors[0]["first_undelivered"] == trade_sequence
                assert (errors[0]["code"], errors[0]["reason"]) == ("FAILED_PRECONDITION", "NEGATIVE_BALANCE")
                assert errors[0]["error"] == f"trade {trade_sequence} would overdraw account b"
                assert errors[0]["lag"] >= 1

                settlement.refusing = False  # settlement is fixed: the trades go through

                async def delivering_again() -> str:
                    status, detail = await health_of(channel, SETTLEMENT_ENTRY)
                    return detail if status == SERVING and detail.endswith(", lag 0") else ""

                detail = await eventually(delivering_again, "the settlement outbox entry SERVING again")
                assert settlement.applied > trade_sequence  # both trades
                assert detail.startswith(f"delivering; acknowledged {settlement.applied}, ")
                orders.cancel()
        finally:
            await trading.stop()
            for server in stand_ins:
                await server.stop()
    assert any(
        line["event"] == "outbox delivering again" and line.get("outbox") == "settlement-trades"
        for line in lines
    )
    assert len(refusal_errors()) == 1
