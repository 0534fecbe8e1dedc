"""Figures of the list calls' building blocks on this machine (no timed assertion anywhere).

    python scripts/bench_lists.py --trades 50000 --open-orders 100000

0. What the list calls add to the engine task: per committed batch, the index follows the
   records and the projection notes the sequence; against applying the same orders.
1. ListOpenOrders' index (trading/open_orders.py), in process: one account with many open orders,
   the first page of 100 and every page of 1,000, against walking the engine's orders once (the
   cost of a page without the index).
2. The fills projection (trading/fills.py) against an embedded PostgreSQL: catching up on a
   journal of N trades from an empty projection (as on the first start over an old journal), in
   trades/s, against a raw COPY of the same rows into a table of the same shape (same machine,
   same run); then its lag on an idle system, p50/p99 from a batch's commit to its fills being
   projected, over single-trade batches.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backbone.runtime.config import Settings
from backbone.runtime.database import migrate, open_pool
from backbone.runtime.embedded import EmbeddedPostgres
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from trading.engine import Engine
from trading.fills import FillProjection, FillQuery, client_order_ids, fill_rows
from trading.journal import Journal
from trading.open_orders import OpenOrderIndex

SHARD = "bench-0"
WHALE = "whale"
T = 1_700_000_000_000_000_000
BUY, SELL = 1, 2


def new_order(order_id: str, side: int, price: int, lots: int, account: str) -> trading_pb2.OrderCommand:
    return trading_pb2.OrderCommand(
        new_order=trading_pb2.NewOrder(
            order_id=order_id, client_order_id=f"c-{order_id}", account_id=account, symbol="BTC-USD",
            side=side, price_ticks=price, quantity_lots=lots,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def engine_task_figures(orders: int) -> None:
    """What the list calls add on the engine task per committed batch (the index following the
    records, the projection noting the sequence), against what the engine spent applying them."""
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    flow = random.Random(1)
    commands = [
        new_order(f"o{n}", flow.choice((BUY, SELL)), 5_000_000 + flow.randint(-5, 5), flow.randint(1, 3),
                  f"a{n % 50}")
        for n in range(orders)
    ]  # fmt: skip
    records: list[trading_pb2.JournalRecord] = []
    started = time.perf_counter()
    for command in commands:
        records += engine.apply(command, T + 1 + len(records) // 160).records
    applied = time.perf_counter() - started
    index = OpenOrderIndex(engine.orders)
    projection = FillProjection(SHARD, client_order_ids(engine.orders))
    batches = [records[i : i + 1_000] for i in range(0, len(records), 1_000)]
    started = time.perf_counter()
    for batch in batches:
        index.committed(batch)
        projection.committed(batch)
    followed = time.perf_counter() - started
    print(
        f"engine task, {orders:,} orders ({len(records):,} records, batches of 1,000): applying them "
        f"{applied / orders * 1e6:.2f} us per order; the list calls' callbacks "
        f"{followed / orders * 1e6:.2f} us per order ({followed / applied:.1%} of the applying)"
    )


def index_figures(open_orders: int) -> None:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    index = OpenOrderIndex(engine.orders)
    for number in range(open_orders):
        command = new_order(f"o{number:07d}", BUY, 1_000 + number % 500, 1, "market-maker")
        index.committed(engine.apply(command, T + 1 + number // 50).records)
    started = time.perf_counter()
    index.page("market-maker", "", (0, ""), 100)
    first_ms = (time.perf_counter() - started) * 1e3
    started, after, pages = time.perf_counter(), (0, ""), 0
    while True:
        orders, more = index.page("market-maker", "", after, 1_000)
        pages += 1
        if not more:
            break
        after = (orders[-1].created_ns, orders[-1].order_id)
    per_page_ms = (time.perf_counter() - started) * 1e3 / pages
    started = time.perf_counter()
    scanned = sum(1 for order in engine.orders.values() if order.account_id == "market-maker")
    scan_ms = (time.perf_counter() - started) * 1e3
    print(
        f"open-order index, one account with {open_orders:,} open orders: "
        f"first page of 100 {first_ms:.2f} ms; "
        f"{pages} pages of 1,000 at {per_page_ms:.2f} ms each; one walk of the engine's {scanned:,} orders "
        f"(what each page would cost without the index, before building anything) {scan_ms:.1f} ms"
    )


def trades_journal(trades: int) -> tuple[Engine, list[trading_pb2.JournalRecord]]:
    """An engine and its journal records: `trades` trades, each a resting sell taken by a buy; the
    sell of every other trade is one account's (WHALE: half the fills of the journal)."""
    engine = Engine()
    records = list(engine.create_instrument(btc_usd(), T).records)
    for number in range(trades):
        clock = T + 1 + number
        records += engine.apply(
            new_order(f"s{number}", SELL, 5_000_000, 1, WHALE if number % 2 else f"acct-{number % 97}"), clock
        ).records
        records += engine.apply(
            new_order(f"b{number}", BUY, 5_000_000, 1, f"acct-{number % 89}"), clock
        ).records
    return engine, records


async def projection_figures(database_url: str, trades: int, lag_samples: int) -> None:
    settings = Settings.from_env({"BACKBONE_DATABASE_URL": database_url, "BACKBONE_TRADING_SHARD": SHARD})
    pool = await open_pool(settings, "bench")
    await migrate(pool, "trading")
    journal = Journal(pool, SHARD)
    engine, records = trades_journal(trades)
    for start in range(0, len(records), 10_000):
        await journal.append(records[start : start + 10_000])
    last = records[-1].sequence

    # Raw COPY of the same rows (same columns, the same write_row path) into a scratch table.
    client_order_id_of = client_order_ids(engine.orders)
    rows = [
        row
        for record in records
        if record.HasField("trade")
        for row in fill_rows(SHARD, record.sequence, record.trade, client_order_id_of)
    ]
    async with pool.connection() as connection:
        await connection.execute("CREATE TABLE scratch_fills (LIKE trading.fills INCLUDING ALL)")
        await connection.commit()
        started = time.perf_counter()
        async with (
            connection.transaction(),
            connection.cursor().copy(
                "COPY scratch_fills (shard, account_id, trade_id, side, order_id, client_order_id, symbol, "
                "price_ticks, quantity_lots, fee, liquidity_side, timestamp_ns, sequence) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        raw_seconds = time.perf_counter() - started

    projection = FillProjection(SHARD, client_order_id_of)
    started = time.perf_counter()
    await projection.start(settings, last)
    assert await projection.wait_projected(last, 600.0)
    catch_up_seconds = time.perf_counter() - started
    print(
        f"fills projection catch-up, {trades:,} trades ({len(rows):,} rows) from an empty projection: "
        f"{catch_up_seconds:.2f} s, {trades / catch_up_seconds:,.0f} trades/s; raw COPY of the same rows "
        f"{raw_seconds:.2f} s ({len(rows) / raw_seconds:,.0f} rows/s): "
        f"ratio {catch_up_seconds / raw_seconds:.2f}"
    )

    # ListFills pages of the account with the most fills: the first, one deep in (by its token's
    # position), one from a time on, and one of a trade id range; the best of five each.
    middle = records[len(records) // 2]
    pages = {
        "first page": FillQuery(WHALE, "", 0, 0, 0, 0, 0, 0, 100),
        "page after trade id N/2": FillQuery(WHALE, "", 0, 0, 0, 0, trades // 2, SELL, 100),
        "page from the time of N/2": FillQuery(WHALE, "", middle.timestamp_ns, 0, 0, 0, 0, 0, 100),
        "page of trade ids [N/2, N/2+500)": FillQuery(
            WHALE, "BTC-USD", 0, 0, trades // 2, trades // 2 + 500, 0, 0, 100
        ),
    }
    timings = []
    for name, query in pages.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            page, _, _ = await projection.page(query)
            best = min(best, time.perf_counter() - started)
        assert len(page) == 100, name
        timings.append(f"{name} {best * 1e3:.2f} ms")
    print(
        f"ListFills pages of 100 (projection.page) for an account with {trades // 2:,} fills: "
        + "; ".join(timings)
    )

    # Idle lag: one trade per batch, appended, then handed to the projection as the engine loop does.
    lags = []
    for number in range(lag_samples):
        clock = T + trades + 10 + number
        batch = engine.apply(new_order(f"ls{number}", SELL, 5_000_000, 1, "lag-a"), clock).records
        batch += engine.apply(new_order(f"lb{number}", BUY, 5_000_000, 1, "lag-b"), clock).records
        await journal.append(batch)
        started = time.perf_counter()
        projection.committed(batch)
        assert await projection.wait_projected(batch[-1].sequence, 30.0)
        lags.append((time.perf_counter() - started) * 1e3)
    lags.sort()
    print(
        f"fills projection lag on an idle system, {lag_samples} single-trade batches: "
        f"p50 {statistics.median(lags):.2f} ms, p99 {lags[int(len(lags) * 0.99) - 1]:.2f} ms, "
        f"max {lags[-1]:.2f} ms"
    )
    await projection.stop()
    await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=50_000)
    parser.add_argument("--open-orders", type=int, default=100_000)
    parser.add_argument("--lag-samples", type=int, default=200)
    options = parser.parse_args()
    engine_task_figures(100_000)
    index_figures(options.open_orders)
    with tempfile.TemporaryDirectory(prefix="backbone-bench-lists-") as folder:
        postgres = EmbeddedPostgres(Path(folder) / "postgres", durable=False)
        try:
            asyncio.run(projection_figures(postgres.start(), options.trades, options.lag_samples))
        finally:
            postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
