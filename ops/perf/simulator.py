"""`backbone load`: the order-flow simulator (see ops/perf/options.py for what it does and its options).

A run: set up the market (not timed), open the streams (or the execution feeds of the unary path),
send the flow (open loop, closed loop, deterministic, or a ramp of open-loop steps), wait for every
answer, for both sides of every trade and for the ledger to post every trade, read each account's
balances, and compute the digest. Then, on its own system, the invariant check. Everything is
bounded: the traffic and its drain by the deadline, settlement and the check by --settle-seconds.
"""

from __future__ import annotations

import _thread
import argparse
import asyncio
import hashlib
import importlib.util
import json
import math
import os
import random
import resource
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc

from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from ops.perf.cpu import CpuMeter
from ops.perf.drivers import StreamDriver, Tracker, UnaryDriver
from ops.perf.flow import Command, Flow, Mix, Shape
from ops.perf.market import Market, SetupError, check_prefix, create_market
from ops.perf.recorder import Recorder, Timeline, merged

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]
POLL_SECONDS = 0.05
TRADE_SIDES_WAIT_SECONDS = 10.0
DIGEST_VERSION = 1


class Stopped(Exception):
    """The deadline passed."""


def client_cpu_seconds() -> float:
    """CPU seconds this process (the load generator) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def poll_until(done: Callable[[], bool], until: float) -> bool:
    """Look at `done` every POLL_SECONDS until it is true (True) or `until` passes (False).

    What is looked at changes in many places (each answer, each report): a poll is simpler and
    cheaper than an event set at every one of them.
    """
    while not done():
        if time.perf_counter() >= until:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


def run_loop(coroutine: Any) -> Any:
    """Run a coroutine on uvloop when it is there (cheaper for the client), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# --- planning -------------------------------------------------------------------------------------


def ramp_rates(start: float, factor: float, maximum: float) -> list[float]:
    """The rates a ramp tries: start, start x factor, ... up to maximum (at least one)."""
    if factor <= 1.0:
        return [start]
    rates = [start]
    while rates[-1] * factor <= maximum * (1 + 1e-9):
        rates.append(rates[-1] * factor)
    return rates


def planned_seconds(options: argparse.Namespace) -> float:
    """How long the traffic should take, for the default deadline."""
    if options.deterministic:
        return 10.0 + 0.02 * float(options.count or 500)
    if options.ramp:
        rates = ramp_rates(options.ramp_start, options.ramp_factor, options.ramp_max)
        return len(rates) * float(options.step_seconds) * 3
    seconds = float(options.duration)
    if options.count and options.mode == "open":
        seconds = min(seconds, float(options.count) / float(options.rate))
    return seconds


class Watchdog:
    """The last resort behind the deadline: interrupt the main thread, then end the process."""

    def __init__(self, seconds: float, on_give_up: Callable[[], None]) -> None:
        self._done = threading.Event()
        self._seconds = seconds
        self._on_give_up = on_give_up
        self._thread = threading.Thread(target=self._watch, name="load-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        if self._done.wait(self._seconds):
            return
        print(f"\nbackbone load: hard deadline ({self._seconds:.0f} s) passed; stopping", file=sys.stderr)
        _thread.interrupt_main()
        if self._done.wait(60.0):
            return
        print("backbone load: still not stopped; ending the process", file=sys.stderr)
        self._on_give_up()
        os._exit(3)


# --- one run ------------------------------------------------------------------------------------------


class Run:
    """The flow, the driver and the figures of one run."""

    def __init__(
        self, options: argparse.Namespace, market: Market, channel: grpc.aio.Channel, id_prefix: str = "c"
    ) -> None:
        self.options = options
        self.market = market
        self.flow = Flow(
            options.seed,
            len(market.account_ids),
            market.mids,
            Mix.parse(options.mix),
            Shape(options.volatility),
            id_prefix,
        )
        self.arrivals = random.Random(f"arrivals-{options.seed}")
        self.start = time.perf_counter()
        self.timeline = Timeline(self.start)
        self.tracker = Tracker(
            self.flow, market.symbols, self.timeline, follow_reports=not options.deterministic
        )
        self.driver: StreamDriver | UnaryDriver
        if options.path == "stream":
            self.driver = StreamDriver(channel, self.tracker, market.metadata(), options.max_batch)
        else:
            self.driver = UnaryDriver(
                channel, self.tracker, market.metadata(), options.max_in_flight, not options.no_executions
            )
        # Without execution feeds a unary client never hears of its resting orders' fills.
        self.hears_makers = options.path == "stream" or not options.no_executions
        self.recorders: list[Recorder] = []
        self.left = options.count if options.count else math.inf
        self.stop_at = math.inf
        self.phase = ""
        self.ramp_steps: list[dict[str, Any]] = []
        self.ramp_verdict: dict[str, Any] = {}
        self.planned = planned_seconds(options) + (options.warmup or 0.0)  # for the progress bar

    def remaining(self) -> float:
        return self.stop_at - time.perf_counter()

    def _command(self, recorder: Recorder, account: int | None = None) -> Command:
        command = self.flow.next(account)
        command.recorder = recorder
        self.left -= 1
        return command

    # --- phases --------------------------------------------------------------------------------------

    async def open_loop(self, recorder: Recorder, rate: float, seconds: float) -> None:
        """Commands due at Poisson arrivals of `rate`/s for `seconds`; each counts from its due time."""
        self.driver.open_loop()
        driver, arrivals, clock = self.driver, self.arrivals, time.perf_counter
        # With a tick the client sends what fell due at most once per tick (bigger requests, each
        # order's wait for the tick counted in its latency); without one, each order when it is due.
        tick = self.options.tick_ms / 1000.0
        begin = clock()
        until = min(begin + seconds, self.stop_at)
        due = begin
        yielded = begin
        while self.left > 0:
            due += arrivals.expovariate(rate)
            if due >= until:
                break
            now = clock()
            if due > now:
                driver.flush()
                await asyncio.sleep(max(due - now, tick))
                yielded = clock()
            elif now - yielded > 0.002:  # behind: still let the writers and readers run
                driver.flush()
                await asyncio.sleep(0)
                yielded = clock()
            command = self._command(recorder)
            command.t = due
            driver.send(command)
        driver.flush()
        # The phase lasts its whole length even when the count ran out early.
        if self.left <= 0:
            return
        rest = until - clock()
        if rest > 0:
            await asyncio.sleep(rest)

    async def closed_loop(
        self,
        recorder: Recorder,
        window: int,
        seconds: float,
        warmup: Recorder | None = None,
        warm_s: float = 0.0,
    ) -> None:
        """`window` commands outstanding (per stream on the stream path) for `seconds`, after
        `warm_s` seconds whose commands go to `warmup`."""
        measured_from = time.perf_counter() + (warm_s if warmup is not None else 0.0)
        until = min(measured_from + seconds, self.stop_at)

        def refill(account: int | None) -> Command | None:
            now = time.perf_counter()
            if self.left <= 0 or now >= until:
                return None
            if warmup is not None and now < measured_from:
                return self._command(warmup, account)
            return self._command(recorder, account)

        self.driver.closed_loop(window, refill)
        await poll_until(lambda: not self.driver.window, until)
        self.driver.open_loop()

    async def deterministic(self, recorder: Recorder, count: int, batch: int) -> None:
        """One request at a time (`batch` commands of one account), each answer awaited."""
        accounts = len(self.market.account_ids)
        while self.left > 0 and count > 0:
            account = self.flow.rng.randrange(accounts)
            now = time.perf_counter()
            for _ in range(int(min(batch, count, self.left))):
                command = self._command(recorder, account)
                command.t = now
                self.driver.send(command)
                count -= 1
            self.driver.flush()
            if not await self.wait_idle(min(30.0, self.remaining())):
                raise Stopped("a deterministic command was not answered within 30 s")

    async def ramp(self) -> None:
        options = self.options
        for rate in ramp_rates(options.ramp_start, options.ramp_factor, options.ramp_max):
            if self.remaining() <= options.step_seconds:
                self.ramp_verdict = {"stopped_by": "the deadline"}
                return
            recorder = Recorder(f"{rate:.0f}/s", rate)
            self.recorders.append(recorder)
            self.phase = f"ramp {rate:,.0f}/s"
            await self.open_loop(recorder, rate, options.step_seconds)
            drained = await self.wait_idle(min(max(5.0, 2 * options.step_seconds), self.remaining()))
            p99 = recorder.ack.percentile_ms(99.0) if recorder.ack.count else math.inf
            errors = recorder.error_rate()
            span = (recorder.last_answer or time.perf_counter()) - (recorder.started or time.perf_counter())
            step = {
                "rate": round(rate, 1),
                "achieved_per_s": round(recorder.answered / span, 1) if span > 0 else None,
                "sent": recorder.sent,
                "answered": recorder.answered,
                "drained": drained,
                "error_rate": round(errors, 6),
                **{k: v for k, v in recorder.ack.summary().items() if k != "count"},
            }
            sustainable = drained and p99 <= options.p99_limit_ms and errors <= options.error_limit
            step["sustainable"] = sustainable
            self.ramp_steps.append(step)
            if not sustainable:
                why = []
                if not drained:
                    why.append("answers still outstanding after the step")
                if p99 > options.p99_limit_ms:
                    why.append(f"p99 {p99:.1f} ms > {options.p99_limit_ms:g} ms")
                if errors > options.error_limit:
                    why.append(f"error rate {errors:.2%} > {options.error_limit:.2%}")
                self.ramp_verdict = {"stopped_by": f"at {rate:,.0f}/s: " + "; ".join(why)}
                return
        self.ramp_verdict = {"stopped_by": f"reached --ramp-max ({options.ramp_max:,.0f}/s) without a knee"}

    async def wait_idle(self, timeout_seconds: float) -> bool:
        if timeout_seconds <= 0:
            return self.tracker.outstanding == 0
        try:
            await asyncio.wait_for(self.tracker.idle.wait(), timeout_seconds)
        except TimeoutError:
            return False
        return True

    async def traffic(self) -> None:
        options = self.options
        if options.deterministic:
            self.phase = "deterministic"
            recorder = Recorder("deterministic")
            self.recorders.append(recorder)
            await self.deterministic(recorder, options.count or 500, options.batch)
        elif options.ramp:
            await self.ramp()
        elif options.mode == "closed":
            self.phase = "closed loop"
            recorder = Recorder("closed loop")
            self.recorders.append(recorder)
            window = options.concurrency or (200 if options.path == "stream" else 64)
            warmup = Recorder("warm-up") if options.warmup else None
            await self.closed_loop(recorder, window, options.duration, warmup, options.warmup)
        else:
            recorder = Recorder("open loop", options.rate)
            if options.warmup:  # same rate, not counted
                self.phase = f"warm-up {options.rate:,.0f}/s"
                await self.open_loop(Recorder("warm-up", options.rate), options.rate, options.warmup)
            self.phase = f"open loop {options.rate:,.0f}/s"
            self.recorders.append(recorder)
            await self.open_loop(recorder, options.rate, options.duration)
        self.phase = "draining"
        await self.wait_idle(self.remaining())

    # --- progress ------------------------------------------------------------------------------------

    async def progress(self) -> None:
        tracker, timeline = self.tracker, self.timeline
        try:
            while True:
                await asyncio.sleep(0.5)
                now = time.perf_counter()
                sent = sum(r.sent for r in self.recorders)
                answered = sum(r.answered for r in self.recorders)
                errors = sum(r.errors for r in self.recorders)
                index = int((now - timeline.start) / timeline.width) - 1
                rate, p99 = 0.0, "-"
                if 0 <= index < len(timeline.windows):
                    window = timeline.windows[index]
                    rate = window.acked / timeline.width
                    if window.latency:
                        p99 = f"{window.percentiles()['p99']:.1f} ms"
                elapsed = now - self.start
                done = min(1.0, elapsed / self.planned) if self.planned > 0 else 0.0
                bar = "#" * round(done * 20)
                line = (
                    f"\r[{bar:<20}] {elapsed:5.1f}s {self.phase}: sent {sent:,}  answered {answered:,}  "
                    f"{rate:,.0f}/s  p99 {p99}  errors {errors:,}  in flight {tracker.outstanding:,}"
                )
                print(line + "\x1b[K", end="", file=sys.stderr, flush=True)
        except asyncio.CancelledError:
            print(file=sys.stderr, flush=True)
            raise


# --- settlement, balances, digest ---------------------------------------------------------------------


def ledger_entries(database_url: str) -> tuple[int, int]:
    """(journal entries, parked trades) in the ledger."""
    import psycopg

    from settlement import audit as ledger_audit

    with psycopg.connect(database_url, autocommit=True) as db:
        return ledger_audit.entry_count(db), len(ledger_audit.parked_trades(db))


async def read_balances(
    stub: gateway_pb2_grpc.GatewayServiceStub, market: Market, min_sequence: int
) -> list[dict[str, tuple[Decimal, Decimal, Decimal]]]:
    """Every account's balances: asset -> (total, reserved, available)."""
    gate = asyncio.Semaphore(16)

    async def one(metadata: tuple[tuple[str, str], ...]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        async with gate:
            answer = await stub.GetBalances(
                gateway_pb2.GetBalancesRequest(min_trading_sequence=min_sequence),
                metadata=metadata,
                timeout=30,
            )
        return {
            b.asset: (Decimal(b.total), Decimal(b.reserved), Decimal(b.available)) for b in answer.balances
        }

    return list(await asyncio.gather(*(one(md) for md in market.metadata())))


async def wait_settled(
    stub: gateway_pb2_grpc.GatewayServiceStub,
    market: Market,
    tracker: Tracker,
    database_url: str | None,
    base_entries: int,
    timeout_seconds: float,
) -> tuple[bool, str]:
    """Wait until the ledger holds every trade the run saw; (settled, how it was known)."""
    deadline = time.perf_counter() + timeout_seconds
    trades = len(tracker.trades)
    if database_url:
        while True:
            entries, parked = await asyncio.to_thread(ledger_entries, database_url)
            posted = entries - base_entries
            if posted + parked >= trades:
                return True, f"ledger: {posted:,} trade entries posted, {parked} parked, of {trades:,} trades"
            if time.perf_counter() >= deadline:
                return False, f"ledger: {posted:,} of {trades:,} trades posted after {timeout_seconds:g} s"
            await asyncio.sleep(POLL_SECONDS)
    # Without the database: each account's ledger total equals risk's total (reserved + available),
    # read by GetBalances once risk has applied the newest report the run saw.
    while True:
        try:
            balances = await read_balances(stub, market, tracker.max_sequence)
        except grpc.aio.AioRpcError as error:
            if time.perf_counter() >= deadline:
                return False, f"balances: GetBalances failed: {error.code().name}: {error.details()}"
            await asyncio.sleep(POLL_SECONDS * 4)
            continue
        behind = sum(
            1 for account in balances for total, reserved, available in account.values()
            if total != reserved + available
        )  # fmt: skip
        if not behind:
            return True, "balances: every account's ledger total equals risk's total"
        if time.perf_counter() >= deadline:
            return (
                False,
                f"balances: {behind} account balances still differ from risk's after {timeout_seconds:g} s",
            )
        await asyncio.sleep(POLL_SECONDS * 4)


async def risk_caught_up(
    stub: gateway_pb2_grpc.GatewayServiceStub, market: Market, sequence: int, timeout_seconds: float
) -> bool:
    """Wait until risk has applied trading's journal up to `sequence` (the newest the run saw), so
    what comes next does not queue behind this run's events."""
    metadata = market.metadata()[0]
    deadline = time.perf_counter() + timeout_seconds
    while True:
        try:
            answer = await stub.GetBalances(
                gateway_pb2.GetBalancesRequest(min_trading_sequence=sequence), metadata=metadata, timeout=30
            )
            if answer.trading_sequence >= sequence:
                return True
        except grpc.aio.AioRpcError:
            pass  # the gateway is busy or restarting: look again until the deadline
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)


def digest(
    market: Market, tracker: Tracker, balances: list[dict[str, tuple[Decimal, Decimal, Decimal]]]
) -> str:
    """SHA-256 of what a seeded run determines: the trades in engine order, as (symbol index, price,
    quantity, buyer's and seller's client order ids), and every account's ledger total per asset, by
    account and asset index (no ids, keys, names of the run or times)."""
    asset_index = {asset: index for index, asset in enumerate(market.assets)}

    def order(item: tuple[str, list[Any]]) -> tuple[int, str]:
        trade_id = item[0]
        return (int(trade_id), "") if trade_id.isdigit() else (-1, trade_id)

    trades = [trade for _, trade in sorted(tracker.trades.items(), key=order)]
    totals = [
        sorted([asset_index.get(asset, -1), f"{figures[0]:f}"] for asset, figures in account.items())
        for account in balances
    ]
    text = json.dumps(
        {"version": DIGEST_VERSION, "trades": trades, "balances": totals}, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


# --- the whole run -------------------------------------------------------------------------------------


async def execute(
    run: Run,
    channel: grpc.aio.Channel,
    database_url: str | None,
    deadline_seconds: float,
    settle_seconds: float,
    progress: bool,
) -> dict[str, Any]:
    """Send a run's traffic (its driver started), wait for its answers, both sides of its trades and
    their settlement, read the balances; the run's figures (the driver is closed afterwards)."""
    market, tracker = run.market, run.tracker
    base_entries = (await asyncio.to_thread(ledger_entries, database_url))[0] if database_url else 0
    progress_task = asyncio.create_task(run.progress()) if progress else None
    cpu_before = client_cpu_seconds()
    run.start = run.timeline.start = time.perf_counter()
    run.stop_at = run.start + deadline_seconds
    stopped = ""
    try:
        await run.traffic()
    except Stopped as why:
        stopped = str(why)
    finally:
        if progress_task is not None:
            progress_task.cancel()
            await asyncio.gather(progress_task, return_exceptions=True)
    traffic_end = time.perf_counter()
    client_cpu = client_cpu_seconds() - cpu_before
    if tracker.outstanding and not stopped:
        stopped = f"the deadline ({deadline_seconds:g} s) passed with {tracker.outstanding} unanswered"
    # Both sides of every trade: the resting side's fill comes in a later report.
    if run.hears_makers:
        sides_deadline = time.perf_counter() + min(TRADE_SIDES_WAIT_SECONDS, max(1.0, run.remaining()))
        await poll_until(lambda: not tracker.incomplete_trades(), sides_deadline)
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]
    settle_started = time.perf_counter()
    settled, settled_how = await wait_settled(
        stub, market, tracker, database_url, base_entries, settle_seconds
    )
    settled_at = time.perf_counter()
    await risk_caught_up(stub, market, tracker.max_sequence, settle_seconds)
    balances_error = None
    try:
        balances = await read_balances(stub, market, tracker.max_sequence)
    except grpc.aio.AioRpcError as error:
        balances, balances_error = [], f"GetBalances failed: {error.code().name}: {error.details()}"
    ended = run.driver.ended()
    await run.driver.close()
    total = merged("run", run.recorders)  # a warm-up is left out
    last_answer = total.last_answer or traffic_end
    first = total.started if total.started is not None else run.start
    span = max(last_answer - first, 1e-9)
    options = run.options
    result: dict[str, Any] = {
        "path": options.path,
        "mode": "deterministic" if options.deterministic else "ramp" if options.ramp else options.mode,
        "target_rate": options.rate
        if options.mode == "open" and not (options.ramp or options.deterministic)
        else None,
        "traffic_s": round(traffic_end - run.start, 3),
        "warmup_s": options.warmup,
        # From the first measured command to its last answer (a warm-up before it left out).
        "measured_s": round(span, 3),
        "max_in_flight": run.driver.max_in_flight,
        # This process's CPU during the traffic, over its length: the share of one core the load
        # generator took from the machine it shares with the system.
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_share": round(client_cpu / max(traffic_end - run.start, 1e-9), 3),
        **{
            k: v
            for k, v in total.summary().items()
            if k not in ("name", "target_rate", "answered_per_s", "fills")
        },
        "answered_per_s": round(total.answered / span, 1),
        # Trades of the measured commands (a warm-up's left out), and of the whole run.
        "trades": total.fills,
        "trades_per_s": round(total.fills / span, 1),
        "trades_all": len(tracker.trades),
        "incomplete_trades": tracker.incomplete_trades() if run.hears_makers else None,
        "duplicate_fills": tracker.duplicate_fills,
        "duplicate_results": tracker.duplicate_results,
        "stray_results": tracker.stray_results,
        "unmatched_reports": tracker.unmatched_reports(),
        "streams_ended": ended,
        "stopped": stopped or None,
        "settled": settled,
        "settlement": settled_how,
        "settle_s": round(settled_at - settle_started, 3),
        # From the first measured command to the last trade posted in the ledger (or the last answer).
        "settled_span_s": round(max(settled_at, last_answer) - first, 3),
        "digest": None if balances_error else digest(market, tracker, balances),
        "balances_error": balances_error,
        "timeline": run.timeline.rows(traffic_end),
    }
    if options.ramp:
        sustainable = [step["rate"] for step in run.ramp_steps if step["sustainable"]]
        result["ramp"] = {
            "steps": run.ramp_steps,
            "knee_rate": max(sustainable) if sustainable else None,
            "p99_limit_ms": options.p99_limit_ms,
            "error_limit": options.error_limit,
            **run.ramp_verdict,
        }
    return result


async def simulate(
    options: argparse.Namespace,
    gateway: str,
    admin_key: str,
    database_url: str | None,
    prefix: str,
    deadline_seconds: float,
    parts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The async part of a run: setup, then :func:`execute`. With `parts` (the pids of its own
    system's processes, by name), the CPU each of them and this process spent per command from
    the end of the setup to the end of the settling (``cpu_us_per_order``)."""
    async with grpc.aio.insecure_channel(gateway, options=CHANNEL_OPTIONS) as channel:
        setup_started = time.perf_counter()
        market = await create_market(channel, admin_key, prefix, options.accounts, options.symbols)
        run = Run(options, market, channel)
        try:
            await run.driver.start()
        except grpc.aio.AioRpcError as error:
            what = "StreamOrders" if options.path == "stream" else "StreamExecutions"
            raise SetupError(f"opening {what}: {error.code().name}: {error.details()}") from None
        except TimeoutError:
            raise SetupError("the gateway did not answer the streams' opening within 10 s") from None
        setup_seconds = time.perf_counter() - setup_started
        meter = None
        if parts is not None:
            meter = CpuMeter({**parts, "client": os.getpid()}, alone=frozenset({"client"}))
            meter.start()
        figures = await execute(
            run,
            channel,
            database_url,
            deadline_seconds,
            options.settle_seconds,
            options.progress or sys.stderr.isatty(),
        )
        if meter is not None:
            meter.stop()
            figures["cpu_us_per_order"] = meter.per_order_us(int(figures["sent"]))
    return {
        "tool": "backbone load",
        "seed": options.seed,
        "prefix": prefix,
        "accounts": options.accounts,
        "symbols": market.symbols,
        "mix": Mix.parse(options.mix).as_dict(),
        "setup_s": round(setup_seconds, 3),
        **figures,
    }


def problems_of(result: dict[str, Any]) -> list[str]:
    """What the run lost or duplicated, as sentences (empty when nothing)."""
    problems = []
    if result["unanswered"]:
        problems.append(f"{result['unanswered']:,} commands never answered")
    if result["duplicate_fills"]:
        problems.append(f"{result['duplicate_fills']:,} fills reported twice")
    if result["duplicate_results"]:
        problems.append(f"{result['duplicate_results']:,} commands answered twice")
    if result["incomplete_trades"]:
        problems.append(f"{result['incomplete_trades']:,} trades whose resting side never heard of its fill")
    if not result["settled"]:
        problems.append(f"trades not all posted in the ledger ({result['settlement']})")
    if result.get("balances_error"):
        problems.append(f"the balances could not be read for the digest ({result['balances_error']})")
    if result.get("invariants") in ("violated", "pending"):
        problems.append(f"invariant check: {result['invariants']}")
    return problems


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def describe(result: dict[str, Any]) -> list[str]:
    """The run for a person."""
    lines = []
    mode = result["mode"]
    how = {
        "open": f"open loop at {result['target_rate']:,.0f}/s" if result["target_rate"] else "open loop",
        "closed": "closed loop",
        "ramp": "ramp",
        "deterministic": "deterministic (one command at a time)",
    }[mode]
    lines.append(
        f"backbone load: {result['path']} path, {how}, {result['accounts']} accounts, "
        f"{len(result['symbols'])} symbols, seed {result['seed']}"
    )
    lines.append(
        f"sent {result['sent']:,} commands ({result['submits']:,} new orders, {result['cancels']:,} "
        f"cancels, {result['replaces']:,} replaces) in {result['traffic_s']:.1f} s; answered "
        f"{result['answered']:,} "
        f"({result['answered_per_s']:,.0f}/s); "
        f"{result['trades']:,} trades ({result['trades_per_s']:,.0f}/s)"
    )
    for name, key in (
        ("submit->ack ", "submit_to_ack"),
        ("submit->fill", "submit_to_fill"),
        ("cancel->ack ", "cancel_to_ack"),
        ("replace->ack", "replace_to_ack"),
    ):
        figures = result["latency_ms"][key]
        lines.append(
            f"  {name}  p50 {_ms(figures['p50'])}  p90 {_ms(figures['p90'])}  p99 {_ms(figures['p99'])}  "
            f"p99.9 {_ms(figures['p99_9'])}  max {_ms(figures['max'])} ms  ({figures['count']:,})"
        )
    outcomes = ", ".join(f"{name} {count:,}" for name, count in result["outcomes"].items())
    lines.append(f"outcomes: {outcomes or 'none'}; errors {result['errors']:,} ({result['error_rate']:.3%})")
    if "ramp" in result:
        ramp = result["ramp"]
        for step in ramp["steps"]:
            mark = "ok  " if step["sustainable"] else "OVER"
            lines.append(
                f"  {mark} {step['rate']:>10,.0f}/s  achieved {step['achieved_per_s'] or 0:>10,.0f}/s  "
                f"p50 {_ms(step['p50'])}  p99 {_ms(step['p99'])}  p99.9 {_ms(step['p99_9'])} ms  "
                f"errors {step['error_rate']:.2%}"
            )
        knee = ramp["knee_rate"]
        lines.append(
            f"knee: {knee:,.0f} orders/s sustainable (p99 <= {ramp['p99_limit_ms']:g} ms, errors <= "
            f"{ramp['error_limit']:.1%}); stopped {ramp.get('stopped_by', '')}"
            if knee
            else f"knee: no rate was sustainable; stopped {ramp.get('stopped_by', '')}"
        )
    if result["stopped"]:
        lines.append(f"stopped early: {result['stopped']}")
    for ended in result["streams_ended"]:
        lines.append(f"stream ended: {ended}")
    lines.append(
        f"settlement: {'every trade posted' if result['settled'] else 'NOT SETTLED'} "
        f"({result['settlement']}; waited {result['settle_s']:.2f} s)"
    )
    lines.append(f"client (this process): {result['client_cpu_share']:.0%} of one core during the traffic")
    if "cpu_us_per_order" in result:
        spent = ", ".join(f"{name} {us:,.0f}" for name, us in result["cpu_us_per_order"].items())
        lines.append(f"CPU per command, us (its own system, from the traffic to the settling): {spent}")
    shown = result["digest"] or "not computed (the balances could not be read)"
    lines.append(f"ledger digest: {shown} (seed {result['seed']}, {result['trades_all']:,} trades)")
    return lines


def _planned_deadline(options: argparse.Namespace) -> float:
    return options.deadline or planned_seconds(options) * 2 + 60.0


def validate(options: argparse.Namespace) -> str | None:
    """A sentence for the first bad option, else None."""
    try:
        Mix.parse(options.mix)
        if options.prefix:
            check_prefix(options.prefix, options.symbols)
    except ValueError as error:
        return str(error)
    if options.target and not options.admin_key:
        return "--target needs --admin-key"
    if bool(options.database_url) != bool(options.redis_url) and options.target:
        return "--database-url and --redis-url go together (both are needed for the check)"
    if options.symbols > 99 or options.accounts > 100_000:
        return "at most 99 symbols and 100,000 accounts"
    if options.plot and importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib: pip install 'backbone-trading[dev]' (or just matplotlib)"
    if options.max_batch > 1000:
        return "--max-batch is at most 1000 (the contract's limit per request)"
    return None


def main(argv: list[str] | None = None) -> int:
    from ops.perf.options import LOAD_DESCRIPTION, add_load_arguments

    parser = argparse.ArgumentParser(
        prog="backbone load",
        description=LOAD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser)
    return run(parser.parse_args(argv))


def run(options: argparse.Namespace) -> int:
    """A whole run from parsed options; the exit code."""
    problem = validate(options)
    if problem:
        print(f"backbone load: {problem}", file=sys.stderr)
        return 2
    deadline = _planned_deadline(options)
    if options.target:
        prefix = options.prefix or "L" + secrets.token_hex(3).upper()
        return _finish(
            options,
            prefix,
            deadline,
            options.target,
            options.admin_key,
            options.database_url,
            options.redis_url,
            None,
        )
    from ops.perf.system import own_system

    print("starting a system of its own (embedded PostgreSQL and Redis, four services)...", file=sys.stderr)
    with own_system(durable=not options.fast_storage) as system:
        return _finish(
            options, options.prefix or "SIM", deadline, system.gateway, system.admin_key,
            system.database_url, system.redis_url, system,
        )  # fmt: skip


def _finish(
    options: argparse.Namespace,
    prefix: str,
    deadline: float,
    gateway: str,
    admin_key: str,
    database_url: str | None,
    redis_url: str | None,
    system: Any,
) -> int:
    def give_up() -> None:
        if system is not None:
            for process in system.services.processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)

    # The watchdog allows for setup, settlement and the check, each bounded on its own.
    watchdog = Watchdog(deadline + 2 * options.settle_seconds + 180.0, give_up)
    watchdog.start()
    try:
        try:
            parts = system.parts() if system is not None else None
            result = run_loop(simulate(options, gateway, admin_key, database_url, prefix, deadline, parts))
        except SetupError as error:
            print(f"backbone load: setup failed: {error}", file=sys.stderr)
            return 2
        check_lines: list[str] = []
        result["own_system"] = system is not None
        if system is not None:
            result["durable_storage"] = system.durable
        if options.no_check or not (database_url and redis_url):
            result["invariants"] = "not checked"
            result["invariants_note"] = (
                "--no-check"
                if options.no_check
                else "an external target: give --database-url and --redis-url"
            )
        else:
            from ops.invariants import check

            report = check(database_url, redis_url, options.settle_seconds)
            result["invariants"] = report.status
            result["invariant_findings"] = [
                {"name": f.name, "status": f.status, "summary": f.summary} for f in report.findings
            ]
            check_lines = list(report.lines())
        problems = problems_of(result)
        result["problems"] = problems
        for line in describe(result):
            print(line)
        if result["invariants"] == "not checked":
            print(f"invariants: not checked ({result['invariants_note']})")
        else:
            where = "its own system" if system is not None else "the target"
            print(f"invariants ({where}): {result['invariants']}")
            if result["invariants"] != "ok":
                print("\n".join(check_lines))
        for problem in problems:
            print(f"LOST OR DUPLICATED: {problem}")
        if options.out:
            Path(options.out).write_text(json.dumps(result, indent=1) + "\n")
            print(f"result written to {options.out}")
        if options.plot:
            from ops.perf.plot import plot

            plot(result, Path(options.plot))
            print(f"plot written to {options.plot}")
        summary = {k: v for k, v in result.items() if k not in ("timeline", "invariant_findings")}
        print(json.dumps(summary, separators=(",", ":")))
        return 1 if problems else 0
    finally:
        watchdog.stop()
