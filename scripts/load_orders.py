"""Drive crossing orders from many accounts through the gateway and measure the whole pipeline.

    python scripts/load_orders.py                          # starts its own system (embedded storage)
    python scripts/load_orders.py --target 127.0.0.1:50051 --admin-key KEY

Three phases, all in the same run (these machines are noisy; only same-run ratios mean much):
1. capacity: `--concurrency` workers submit orders back to back (closed loop) -> orders/s;
2. latency: orders arrive at a fixed `--rate` (open loop, so queueing shows) -> p50/p99/p99.9 from an
   HDR histogram, measured from each order's scheduled time;
3. baseline: the same workers call the gateway's health Check, a trivial unary call on the same
   server -> calls/s; the ratio orders/s / calls/s says what the pipeline costs over bare gRPC.
Afterwards, on its own system, it runs `backbone check` (every invariant must still hold; the exit
code is 1 when one does not). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backbone.common.v1 import common_pb2  # noqa: E402
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from backbone.runtime.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from ops.invariants import check  # noqa: E402
from ops.supervisor import ServiceProcesses  # noqa: E402

LATENCY_MAX_US = 60_000_000


class Market:
    """Accounts and an instrument created for this run."""

    def __init__(self, channel: grpc.aio.Channel, admin_key: str, accounts: int) -> None:
        self.channel = channel
        self.admin = gateway_pb2_grpc.AdminServiceStub(channel)
        self.public = gateway_pb2_grpc.GatewayServiceStub(channel)
        self.admin_md = (("x-admin-key", admin_key),)
        self.symbol = f"LD{secrets.token_hex(3).upper()}-USD"
        self.base = self.symbol.split("-")[0]
        self.account_count = accounts
        self.keys: list[tuple[tuple[str, str], ...]] = []

    async def create(self) -> None:
        for code, scale in (("USD", 6), (self.base, 8)):
            try:
                await self.admin.CreateAsset(
                    gateway_pb2.CreateAssetRequest(code=code, scale=scale), metadata=self.admin_md
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        await self.admin.CreateInstrument(
            gateway_pb2.CreateInstrumentRequest(
                symbol=self.symbol, base_asset=self.base, quote_asset="USD", tick_size="0.01",
                lot_size="0.01", max_quantity="100000", max_price="100000",
                maker_fee_bps=10, taker_fee_bps=20,
            ),
            metadata=self.admin_md,
        )  # fmt: skip
        for _ in range(self.account_count):
            account = await self.admin.CreateAccount(
                gateway_pb2.CreateAccountRequest(account_id=f"load-{uuid.uuid4().hex[:12]}"),
                metadata=self.admin_md,
            )
            for asset, amount in (("USD", "1000000000"), (self.base, "10000000")):
                await self.admin.Deposit(
                    gateway_pb2.DepositRequest(
                        deposit_id=f"load-{uuid.uuid4().hex}",
                        account_id=account.account_id,
                        asset=asset,
                        amount=amount,
                    ),
                    metadata=self.admin_md,
                )
            self.keys.append((("x-api-key", account.api_key),))

    def random_order(
        self, rng: random.Random
    ) -> tuple[gateway_pb2.SubmitOrderRequest, tuple[tuple[str, str], ...]]:
        side = rng.choice((common_pb2.SIDE_BUY, common_pb2.SIDE_SELL))
        # Prices straddle 100.00 so about half the orders cross the book.
        offset = rng.randint(-10, 10)
        price = 10_000 + (offset if side == common_pb2.SIDE_BUY else -offset)
        request = gateway_pb2.SubmitOrderRequest(
            client_order_id=uuid.uuid4().hex,
            symbol=self.symbol,
            side=side,
            price=f"{price // 100}.{price % 100:02d}",
            quantity=f"{rng.randint(1, 20)}.00",
        )
        return request, rng.choice(self.keys)


async def capacity(market: Market, workers: int, seconds: float) -> tuple[float, int, int]:
    """Closed loop: (orders/s, orders accepted, orders refused)."""
    deadline = time.perf_counter() + seconds
    done = [0, 0]

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            request, metadata = market.random_order(rng)
            try:
                await market.public.SubmitOrder(request, metadata=metadata, timeout=30)
                done[0] += 1
            except grpc.aio.AioRpcError:
                done[1] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = time.perf_counter() - started
    return (done[0] + done[1]) / elapsed, done[0], done[1]


async def latency(market: Market, rate: float, seconds: float) -> tuple[HdrHistogram, int, float]:
    """Open loop at `rate` orders/s: histogram (µs, from the scheduled time), errors, achieved rate."""
    histogram = HdrHistogram(1, LATENCY_MAX_US, 3)
    errors = 0
    rng = random.Random(7)
    total = int(rate * seconds)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        nonlocal errors
        request, metadata = market.random_order(rng)
        try:
            await market.public.SubmitOrder(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError:
            errors += 1
        histogram.record_value(max(1, int((time.perf_counter() - scheduled) * 1e6)))

    started = time.perf_counter()
    for index in range(total):
        scheduled = started + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    elapsed = time.perf_counter() - started
    return histogram, errors, total / elapsed


async def baseline(channel: grpc.aio.Channel, workers: int, seconds: float) -> float:
    """Closed loop of health checks on the same gateway: calls/s."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.perf_counter() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return count / (time.perf_counter() - started)


async def run(target: str, admin_key: str, options: argparse.Namespace) -> dict[str, object]:
    async with grpc.aio.insecure_channel(target) as channel:
        market = Market(channel, admin_key, options.accounts)
        await market.create()
        print(f"market {market.symbol}, {options.accounts} funded accounts", file=sys.stderr)
        orders_per_second, accepted, refused = await capacity(market, options.concurrency, options.seconds)
        print(f"capacity: {orders_per_second:,.0f} orders/s ({accepted} accepted, {refused} refused)")
        histogram, errors, achieved = await latency(market, options.rate, options.seconds)
        p50, p99, p999 = (histogram.get_value_at_percentile(p) / 1000 for p in (50, 99, 99.9))
        print(
            f"latency at {achieved:,.0f} orders/s (open loop): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"p99.9 {p999:.2f} ms, max {histogram.get_max_value() / 1000:.2f} ms, errors {errors}"
        )
        echo_per_second = await baseline(channel, options.concurrency, options.seconds)
        ratio = orders_per_second / echo_per_second
        print(f"baseline: {echo_per_second:,.0f} health checks/s on the same gateway; ratio {ratio:.3f}")
    return {
        "orders_per_second": round(orders_per_second, 1),
        "orders_accepted": accepted,
        "orders_refused": refused,
        "open_loop_rate": round(achieved, 1),
        "latency_ms": {"p50": round(p50, 3), "p99": round(p99, 3), "p99_9": round(p999, 3)},
        "open_loop_errors": errors,
        "baseline_unary_calls_per_second": round(echo_per_second, 1),
        "ratio_orders_to_unary_baseline": round(ratio, 4),
        "concurrency": options.concurrency,
        "accounts": options.accounts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running gateway; default: start a system for this run")
    parser.add_argument("--admin-key", help="the running system's admin key (with --target)")
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop arrival rate, orders/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    options = parser.parse_args()
    if options.target:
        if not options.admin_key:
            parser.error("--target needs --admin-key")
        figures = asyncio.run(run(options.target, options.admin_key, options))
    else:
        with tempfile.TemporaryDirectory(prefix="backbone-load-") as folder:
            postgres = EmbeddedPostgres(Path(folder) / "postgres", durable=False)
            cache = EmbeddedRedis(Path(folder) / "redis", durable=False)
            services = None
            try:
                admin_key = "load-" + secrets.token_hex(8)
                environment = {
                    "BACKBONE_DATABASE_URL": postgres.start(),
                    "BACKBONE_REDIS_URL": cache.start(),
                    "BACKBONE_ADMIN_KEY": admin_key,
                    "BACKBONE_LOG_LEVEL": "warning",
                    "BACKBONE_LOG_FORMAT": "json",
                    **{f"BACKBONE_{n.upper()}_ADDRESS": f"127.0.0.1:{free_port()}" for n in
                       ("gateway", "risk", "trading", "settlement")},
                }  # fmt: skip
                services = ServiceProcesses(environment, Path(folder) / "logs")
                services.start_all()
                figures = asyncio.run(run(services.address("gateway"), admin_key, options))
                report = check(environment["BACKBONE_DATABASE_URL"], environment["BACKBONE_REDIS_URL"], 60)
                print("invariants after the load:", *report.lines(), sep="\n")
                figures["invariants"] = report.status
            finally:
                if services is not None:
                    services.stop_all()
                cache.stop()
                postgres.stop()
    print(json.dumps(figures, sort_keys=True))
    return 1 if figures.get("invariants") == "violated" else 0


if __name__ == "__main__":
    sys.exit(main())
