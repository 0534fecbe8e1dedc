"""Drive the back end alone (risk, trading, settlement) and measure orders/s until every trade is settled.

    python scripts/drive_backend.py                         # 15 s of load on a system of its own
    python scripts/drive_backend.py --seconds 30 --profile /tmp/prof   # and py-spy every service

It starts a system (embedded PostgreSQL and Redis, the four services), funds `--accounts` accounts
on `--symbols` instruments through the gateway's AdminService, then stops the gateway (unless
`--keep-gateway`) and does what the gateway does for each order, in batches: a Reserve on risk's
StreamReservations, then, for each reservation granted, a NewOrder carrying the reservation's
epoch on trading's internal StreamOrders (an order trading rejects has its reservation released,
as the gateway's saga does). `--streams` pairs of streams each keep `--window` batches of `--batch`
orders in flight. Orders cross: buys and sells around a fixed mid on each symbol, from random
accounts, so about half of them trade.

Figures: orders/s acknowledged by trading while the load ran, and orders/s end to end: from the
first order to the moment settlement's ledger has posted every journaled trade and risk has applied
every trade and release (their cursors reach trading's journal), so a back end that acknowledges
faster than it settles is charged for its backlog. With `--profile DIR`, py-spy records each service
for the load phase (flame graphs DIR/<service>.svg, and the top functions by own and total time
printed). Afterwards `backbone check` runs on the system; the exit code is 1 when an invariant is
violated. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backbone.common.v1 import common_pb2  # noqa: E402
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc  # noqa: E402
from backbone.runtime.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc  # noqa: E402
from ops.invariants import check  # noqa: E402
from ops.perf.cpu import CpuMeter  # noqa: E402
from ops.supervisor import ServiceProcesses  # noqa: E402
from risk.keys import cursor_key  # noqa: E402
from settlement import audit as ledger_audit  # noqa: E402
from trading import audit as journal_audit  # noqa: E402

SHARD = "trading-0"
MID_TICKS = 10_000  # 100.00 with a tick of 0.01
MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MESSAGE_BYTES),
]


class Market:
    """The run's instruments and funded accounts, made through the gateway's AdminService."""

    def __init__(self, symbols: int, accounts: int) -> None:
        tag = secrets.token_hex(2).upper()
        self.symbols = [f"D{tag}{n}-USD" for n in range(symbols)]
        self.accounts = [f"drive-{tag.lower()}-{n}" for n in range(accounts)]

    async def create(self, gateway: str, admin_key: str) -> None:
        metadata = (("x-admin-key", admin_key),)
        async with grpc.aio.insecure_channel(gateway) as channel:
            admin = gateway_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
            bases = [symbol.split("-")[0] for symbol in self.symbols]
            for code, scale in [("USD", 6)] + [(base, 8) for base in bases]:
                try:
                    await admin.CreateAsset(
                        gateway_pb2.CreateAssetRequest(code=code, scale=scale), metadata=metadata
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                        raise
            for symbol, base in zip(self.symbols, bases, strict=True):
                await admin.CreateInstrument(
                    gateway_pb2.CreateInstrumentRequest(
                        symbol=symbol, base_asset=base, quote_asset="USD", tick_size="0.01",
                        lot_size="0.01", max_quantity="100000", max_price="100000",
                        maker_fee_bps=10, taker_fee_bps=20,
                    ),
                    metadata=metadata,
                )  # fmt: skip
            limit = asyncio.Semaphore(32)

            async def fund(account: str) -> None:
                async with limit:
                    await admin.CreateAccount(
                        gateway_pb2.CreateAccountRequest(account_id=account), metadata=metadata
                    )
                    for asset, amount in [("USD", "10000000000")] + [(base, "100000000") for base in bases]:
                        await admin.Deposit(
                            gateway_pb2.DepositRequest(
                                deposit_id=f"{account}-{asset}",
                                account_id=account,
                                asset=asset,
                                amount=amount,
                            ),
                            metadata=metadata,
                            timeout=30,
                        )

            await asyncio.gather(*(fund(account) for account in self.accounts))


class Flow:
    """Crossing orders: buys at mid+k, sells at mid-k for k in [-10, 10], 1-20 lots, random accounts."""

    def __init__(self, market: Market, seed: int) -> None:
        self.market = market
        self.rng = random.Random(seed)
        self.run = secrets.token_hex(3)
        self.count = 0

    def batch(self, size: int) -> list[tuple[risk_pb2.ReservationCommand, trading_pb2.NewOrder]]:
        rng, market, out = self.rng, self.market, []
        for _ in range(size):
            self.count += 1
            side = common_pb2.SIDE_BUY if rng.random() < 0.5 else common_pb2.SIDE_SELL
            offset = rng.randint(-10, 10)
            price = MID_TICKS + (offset if side == common_pb2.SIDE_BUY else -offset)
            quantity = rng.randint(1, 20)
            account = rng.choice(market.accounts)
            symbol = rng.choice(market.symbols)
            order_id = f"o-{self.run}-{self.count}"
            reserve = risk_pb2.ReservationCommand(
                reserve=risk_pb2.Reserve(
                    order_id=order_id, account_id=account, symbol=symbol, side=side,
                    price_ticks=price, quantity_lots=quantity,
                )
            )  # fmt: skip
            order = trading_pb2.NewOrder(
                order_id=order_id, client_order_id=f"c-{self.run}-{self.count}", account_id=account,
                symbol=symbol, side=side, type=common_pb2.ORDER_TYPE_LIMIT,
                time_in_force=common_pb2.TIME_IN_FORCE_GTC, price_ticks=price, quantity_lots=quantity,
            )  # fmt: skip
            out.append((reserve, order))
        return out


class Counts:
    def __init__(self) -> None:
        self.sent = 0
        self.reserved = 0
        self.refused_by_risk: collections.Counter[str] = collections.Counter()
        self.acknowledged = 0
        self.rejected_by_trading = 0
        self.fills = 0
        self.released = 0


class Lane:
    """One risk stream and one trading stream, `window` batches in flight through both."""

    def __init__(self, risk: grpc.aio.Channel, trading: grpc.aio.Channel, window: int) -> None:
        self.reservations = risk_pb2_grpc.RiskServiceStub(risk).StreamReservations()  # type: ignore[no-untyped-call]
        self.orders = trading_pb2_grpc.TradingServiceStub(trading).StreamOrders()  # type: ignore[no-untyped-call]
        self.window = asyncio.Semaphore(window)
        self.window_count = window
        self.risk_out: asyncio.Queue[risk_pb2.StreamReservationsRequest | None] = asyncio.Queue()
        self.in_risk: collections.deque[list[tuple[risk_pb2.ReservationCommand, trading_pb2.NewOrder]]]
        self.in_risk = collections.deque()
        self.in_trading: collections.deque[int] = collections.deque()  # batches of orders at trading
        self.releases_pending = 0
        self.releases_done = asyncio.Event()
        self.releases_done.set()
        self.error: BaseException | None = None
        self.sequence = 0

    async def write_risk(self) -> None:
        while (request := await self.risk_out.get()) is not None:
            await self.reservations.write(request)
        await self.reservations.done_writing()

    async def run(self, flow: Flow, batch: int, deadline: float, counts: Counts) -> None:
        writer = asyncio.create_task(self.write_risk())
        risk_reader = asyncio.create_task(self.read_risk(counts))
        trading_reader = asyncio.create_task(self.read_trading(counts))
        helpers = (writer, risk_reader, trading_reader)
        try:
            await self._send(flow, batch, deadline, counts, writer, risk_reader, trading_reader)
        finally:
            for task in helpers:
                task.cancel()

    async def _send(
        self,
        flow: Flow,
        batch: int,
        deadline: float,
        counts: Counts,
        writer: asyncio.Task[None],
        risk_reader: asyncio.Task[None],
        trading_reader: asyncio.Task[None],
    ) -> None:
        def failed(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                self.error = task.exception()
                self.window.release()  # wake the sender, which raises it

        for task in (writer, risk_reader, trading_reader):
            task.add_done_callback(failed)
        while time.perf_counter() < deadline:
            await self._acquire()
            items = flow.batch(batch)
            self.sequence += 1
            self.in_risk.append(items)
            counts.sent += len(items)
            self.risk_out.put_nowait(
                risk_pb2.StreamReservationsRequest(sequence=self.sequence, commands=[r for r, _ in items])
            )
        for _ in range(self.window_count):  # every batch answered by trading
            await self._acquire()
        await self.orders.done_writing()
        await trading_reader
        await self.releases_done.wait()
        self.risk_out.put_nowait(None)
        await writer
        await risk_reader

    async def _acquire(self) -> None:
        await self.window.acquire()
        if self.error is not None:
            raise self.error

    async def read_risk(self, counts: Counts) -> None:
        sequence = 0
        async for response in self.reservations:
            if response.sequence == -1:  # a release batch's answer
                self.releases_pending -= 1
                if not self.releases_pending:
                    self.releases_done.set()
                continue
            items = self.in_risk.popleft()
            sequence += 1
            commands = []
            for (_, order), result in zip(items, response.results, strict=True):
                if result.accepted:
                    order.risk_epoch = result.epoch
                    commands.append(trading_pb2.OrderCommand(new_order=order))
                else:
                    counts.refused_by_risk[common_pb2.RejectReason.Name(result.reject_reason)] += 1
            counts.reserved += len(commands)
            if not commands:
                self.window.release()
                continue
            self.in_trading.append(len(commands))
            await self.orders.write(trading_pb2.StreamOrdersRequest(sequence=sequence, commands=commands))

    async def read_trading(self, counts: Counts) -> None:
        async for response in self.orders:
            self.in_trading.popleft()
            releases = []
            for result in response.results:
                counts.acknowledged += 1
                for report in result.reports:
                    kind = report.execution_type
                    if kind == common_pb2.EXECUTION_TYPE_REJECTED:
                        counts.rejected_by_trading += 1
                        order = report.order
                        releases.append(
                            risk_pb2.ReservationCommand(
                                release=risk_pb2.Release(order_id=order.order_id, account_id=order.account_id)
                            )
                        )
                    elif kind == common_pb2.EXECUTION_TYPE_TRADE:
                        counts.fills += 1
            if releases:
                counts.released += len(releases)
                self.releases_pending += 1
                self.releases_done.clear()
                self.risk_out.put_nowait(risk_pb2.StreamReservationsRequest(sequence=-1, commands=releases))
            self.window.release()


async def drive(options: argparse.Namespace, addresses: dict[str, str], market: Market) -> dict[str, float]:
    flow = Flow(market, options.seed)
    counts = Counts()
    async with (
        grpc.aio.insecure_channel(addresses["risk"], options=CHANNEL_OPTIONS) as risk,
        grpc.aio.insecure_channel(addresses["trading"], options=CHANNEL_OPTIONS) as trading,
    ):
        lanes = [Lane(risk, trading, options.window) for _ in range(options.streams)]
        started = time.perf_counter()
        deadline = started + options.seconds
        print("load started", file=sys.stderr, flush=True)

        async def progress() -> None:
            while True:
                await asyncio.sleep(1.0)
                elapsed = time.perf_counter() - started
                print(
                    f"{elapsed:5.1f} s: sent {counts.sent}, reserved {counts.reserved}, "
                    f"acknowledged {counts.acknowledged} ({counts.acknowledged / elapsed:,.0f}/s)",
                    file=sys.stderr,
                )

        reporter = asyncio.create_task(progress())
        try:
            await asyncio.gather(*(lane.run(flow, options.batch, deadline, counts) for lane in lanes))
        finally:
            reporter.cancel()
        acknowledged_at = time.perf_counter()
    return {
        "started": started,
        "acknowledged_at": acknowledged_at,
        "sent": counts.sent,
        "reserved": counts.reserved,
        "refused_by_risk": dict(counts.refused_by_risk),  # type: ignore[dict-item]
        "acknowledged": counts.acknowledged,
        "rejected_by_trading": counts.rejected_by_trading,
        "fill_reports": counts.fills,
        "released": counts.released,
    }


def journal_heads(database_url: str) -> tuple[int, int, int]:
    """(last trade sequence, last sequence risk is sent, trades) of the shard's journal."""
    with psycopg.connect(database_url) as connection:
        return journal_audit.delivery_heads(connection, SHARD)


def receiver_cursors(database_url: str, redis_url: str) -> tuple[int, int]:
    """(settlement's cursor, risk's cursor) for the shard."""
    with psycopg.connect(database_url) as connection:
        settled = ledger_audit.stream_cursors(connection).get(SHARD, 0)
    with redis.Redis.from_url(redis_url) as client:
        value = client.get(cursor_key(SHARD))  # one key (risk_audit.cursors scans them all)
    return settled, int(value) if value else 0


def wait_settled(
    database_url: str, redis_url: str, timeout_seconds: float
) -> tuple[float, float, float, int]:
    """Wait until settlement and risk have every trade (and release); (when, when settlement had them,
    when risk had them, trades)."""
    last_trade, last_risk, trades = journal_heads(database_url)
    deadline = time.perf_counter() + timeout_seconds
    ledger_at = risk_at = 0.0
    while True:
        settled, applied = receiver_cursors(database_url, redis_url)
        now = time.perf_counter()
        if settled >= last_trade and not ledger_at:
            ledger_at = now
        if applied >= last_risk and not risk_at:
            risk_at = now
        if ledger_at and risk_at:
            return now, ledger_at, risk_at, trades
        if time.perf_counter() > deadline:
            raise TimeoutError(
                f"not settled after {timeout_seconds:.0f} s: ledger at {settled} of {last_trade}, "
                f"risk at {applied} of {last_risk}"
            )
        time.sleep(0.05)


class Profiler:
    """py-spy record on each service for the load phase."""

    def __init__(self, folder: Path, pids: dict[str, int], seconds: float) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).parent / "py-spy")
        self.processes = {}
        for name, pid in pids.items():
            command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
            command += ["--rate", "100", "--nonblocking", "--format", "raw"]
            command += ["--output", str(folder / f"{name}.txt")]
            self.processes[name] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def finish(self) -> dict[str, list[tuple[str, float, float]]]:
        tops = {}
        for name, process in self.processes.items():
            process.wait()
            path = self.folder / f"{name}.txt"
            if path.exists():
                tops[name] = top_functions(path.read_text())
        return tops


def top_functions(collapsed: str, limit: int = 15) -> list[tuple[str, float, float]]:
    """(function, own %, total %) of the most expensive functions in py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return []
    return [
        (frame, 100 * count / samples, 100 * total[frame] / samples)
        for frame, count in own.most_common(limit)
    ]


def _frame(frame: str) -> str:
    """'function (path/file.py:line)' as 'function file.py'."""
    function, _, where = frame.partition(" (")
    return f"{function} {where.rsplit('/', 1)[-1].split(':')[0]}"


def print_tops(tops: dict[str, list[tuple[str, float, float]]]) -> None:
    for name, rows in tops.items():
        print(f"py-spy top (own time) of {name}:")
        for frame, own, total in rows:
            print(f"  {own:5.1f}% own {total:5.1f}% total  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long orders are sent")
    parser.add_argument("--batch", type=int, default=300, help="orders per batch")
    parser.add_argument("--window", type=int, default=4, help="batches in flight per pair of streams")
    parser.add_argument("--streams", type=int, default=2, help="pairs of streams (risk, trading)")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-gateway", action="store_true", help="leave the gateway running")
    parser.add_argument("--profile", type=Path, help="py-spy each service into this folder")
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="backbone-drive-") as folder:
        postgres = EmbeddedPostgres(Path(folder) / "postgres", durable=False)
        cache = EmbeddedRedis(Path(folder) / "redis", durable=False)
        services = None
        try:
            admin_key = "drive-" + secrets.token_hex(8)
            environment = {
                "BACKBONE_DATABASE_URL": postgres.start(),
                "BACKBONE_REDIS_URL": cache.start(),
                "BACKBONE_ADMIN_KEY": admin_key,
                "BACKBONE_LOG_LEVEL": "warning",
                "BACKBONE_LOG_FORMAT": "json",
                "BACKBONE_TRADING_SHARD": SHARD,
                **{f"BACKBONE_{n.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for n in
                   ("gateway", "risk", "trading", "settlement")},
            }  # fmt: skip
            database_url, redis_url = environment["BACKBONE_DATABASE_URL"], environment["BACKBONE_REDIS_URL"]
            services = ServiceProcesses(environment, Path(folder) / "logs")
            services.start_all()
            market = Market(options.symbols, options.accounts)
            asyncio.run(market.create(services.address("gateway"), admin_key))
            print(f"{len(market.symbols)} symbols, {len(market.accounts)} funded accounts", file=sys.stderr)
            if not options.keep_gateway:
                services.stop("gateway")
            addresses = {name: services.address(name) for name in ("risk", "trading", "settlement")}
            profiler = None
            if options.profile is not None:
                pids = {name: services.processes[name].pid for name in addresses}
                profiler = Profiler(options.profile, pids, options.seconds)
            assert postgres.process is not None and cache.process is not None
            meter = CpuMeter(
                {name: services.processes[name].pid for name in addresses}
                | {"redis": cache.process.pid, "postgres": postgres.process.pid}
            )
            meter.start()
            figures: dict[str, object] = dict(asyncio.run(drive(options, addresses, market)))
            settled_at, ledger_at, risk_at, trades = wait_settled(
                database_url, redis_url, options.settle_timeout
            )
            meter.stop()
            started = float(figures.pop("started"))  # type: ignore[arg-type]
            acknowledged_at = float(figures.pop("acknowledged_at"))  # type: ignore[arg-type]
            reserved = int(figures["reserved"])  # type: ignore[call-overload]
            figures.update(
                trades=trades,
                acknowledged_orders_per_s=round(reserved / (acknowledged_at - started), 1),
                settled_orders_per_s=round(reserved / (settled_at - started), 1),
                settled_trades_per_s=round(trades / (settled_at - started), 1),
                seconds_to_settle_after_last_ack=round(settled_at - acknowledged_at, 3),
                ledger_done_after_last_ack=round(max(0.0, ledger_at - acknowledged_at), 3),
                risk_done_after_last_ack=round(max(0.0, risk_at - acknowledged_at), 3),
                batch=options.batch,
                window=options.window,
                streams=options.streams,
                cpu_us_per_order=meter.per_order_us(reserved),
            )
            print(
                f"acknowledged {figures['acknowledged_orders_per_s']:,.0f} orders/s; end to end "
                "(every trade settled in the ledger and applied in risk) "
                f"{figures['settled_orders_per_s']:,.0f} orders/s, "
                f"{figures['settled_trades_per_s']:,.0f} trades/s; settled "
                f"{figures['seconds_to_settle_after_last_ack']:.2f} s after the last acknowledgement "
                f"(ledger {figures['ledger_done_after_last_ack']:.2f} s, "
                f"risk {figures['risk_done_after_last_ack']:.2f} s)"
            )
            print(
                "CPU per order (µs, load and settling): "
                + ", ".join(f"{name} {us:,.0f}" for name, us in meter.per_order_us(reserved).items())
            )
            if profiler is not None:
                print_tops(profiler.finish())
            report = check(database_url, redis_url, 60)
            print("invariants after the load:", *report.lines(), sep="\n")
            figures["invariants"] = report.status
        finally:
            if services is not None:
                with contextlib.suppress(Exception):
                    services.stop_all()
            cache.stop()
            postgres.stop()
    print(json.dumps(figures, sort_keys=True))
    return 1 if figures.get("invariants") == "violated" else 0


if __name__ == "__main__":
    sys.exit(main())
