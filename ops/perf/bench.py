"""`backbone bench` (and scripts/bench_pipeline.py): the pipeline against raw gRPC, measured in one run.

1. raw baselines (ops/perf/raw.py): a grpc.aio unary echo -> raw_unary_calls_per_s (and the CPU
   its server and client spent per call: raw_unary_server_cpu_us_per_call, the floor under any
   grpc.aio unary server here, and raw_unary_client_cpu_us_per_call); four processes
   relaying batches of 100 orders through bidirectional streams -> raw_relay_orders_per_s;
2. Backbone on a system of its own (durable storage, as `backbone up`; the client is this process):
   - SubmitOrder closed loop (--concurrency calls in flight) -> unary_orders_per_s (answered/s);
   - StreamOrders closed loop (one stream per account, --window orders outstanding on each) ->
     stream_orders_per_s, counted from the first order to the moment the ledger holds every trade
     of the phase (the drain is in the time);
   - StreamOrders open loop at half stream_orders_per_s -> p99_ms of submit->ack (from each
     order's due time);
   - `backbone check` on the system.
Each phase waits for the previous one's trades to be posted before it starts. The flow is the
simulator's (new orders only by default: passive and marketable limit orders over random-walk
mids). The last line printed is one JSON object; the exit code is 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from ops.perf import raw, simulator
from ops.perf.cpu import CpuMeter
from ops.perf.market import create_market
from ops.perf.options import add_load_arguments

PREFIX = "BENCH"
MIN_OPEN_LOOP_RATE = 10.0


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(terse=True),
    }


def _load_options(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_load_arguments(parser)
    return parser.parse_args(arguments)


async def _phase(
    channel: grpc.aio.Channel,
    system: Any,
    prefix: str,
    options: argparse.Namespace,
    arguments: list[str],
) -> dict[str, Any]:
    """One phase on a market of its own (its books hold only its own orders); its figures."""
    market = await create_market(channel, system.admin_key, prefix, options.accounts, options.symbols)
    load_options = _load_options(
        [
            *arguments,
            *("--seed", str(options.seed), "--accounts", str(options.accounts)),
            *("--symbols", str(options.symbols), "--mix", options.mix, "--duration", str(options.seconds)),
            *("--warmup", str(_warmup(options))),
        ]
    )
    run = simulator.Run(load_options, market, channel)
    await run.driver.start()
    deadline = simulator.planned_seconds(load_options) * 2 + 60.0
    meter = CpuMeter(system.parts() | {"client": os.getpid()}, alone=frozenset({"client"}))
    meter.start()
    figures = await simulator.execute(
        run, channel, system.database_url, deadline, options.settle_seconds, sys.stderr.isatty()
    )
    meter.stop()
    figures["accepted"] = int(figures["outcomes"].get("OK", 0))
    # CPU each process spent per command sent (the warm-up, the traffic and the settling).
    figures["cpu_us_per_order"] = meter.per_order_us(int(figures["sent"]))
    # Orders the system accepted per second, from the first measured order (after the warm-up) to
    # the last answer, or to the last trade posted in the ledger (settled_span_s).
    figures["accepted_per_s"] = figures["accepted"] / max(figures["measured_s"], 1e-9)
    figures["accepted_per_s_settled"] = figures["accepted"] / max(figures["settled_span_s"], 1e-9)
    return figures


async def backbone_phases(options: argparse.Namespace, system: Any) -> dict[str, dict[str, Any]]:
    async with grpc.aio.insecure_channel(system.gateway, options=simulator.CHANNEL_OPTIONS) as channel:
        print(f"  unary SubmitOrder, closed loop, {options.concurrency} in flight, {options.seconds:g} s ...")
        unary_loop = ["--path", "unary", "--mode", "closed", "--concurrency", str(options.concurrency)]
        unary = await _phase(channel, system, PREFIX + "U", options, [*unary_loop, "--no-executions"])
        window = options.window
        print(
            f"  StreamOrders, closed loop, {options.accounts} streams x {window} outstanding, "
            f"{options.seconds:g} s, until every trade is posted ..."
        )
        stream = await _phase(
            channel, system, PREFIX + "S", options,
            ["--path", "stream", "--mode", "closed", "--concurrency", str(window)],
        )  # fmt: skip
        rate = max(MIN_OPEN_LOOP_RATE, stream["accepted_per_s_settled"] / 2)
        print(f"  StreamOrders, open loop at {rate:,.0f}/s (half that), {options.seconds:g} s ...")
        open_loop = await _phase(
            channel,
            system,
            PREFIX + "O",
            options,
            ["--path", "stream", "--mode", "open", "--rate", str(rate)],
        )
    stream["window"] = window
    open_loop["rate"] = rate
    return {"unary": unary, "stream": stream, "open_loop": open_loop}


def _warmup(options: argparse.Namespace) -> float:
    return float(options.warmup) if options.warmup is not None else min(2.0, options.seconds / 5)


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 4) if denominator else 0.0


def run(options: argparse.Namespace) -> int:
    from ops.invariants import check
    from ops.perf.system import own_system

    started = time.perf_counter()
    about = machine()
    print(
        f"backbone bench on {about['cpus']} CPUs ({about['cpu_model']}), Python {about['python']}, "
        f"grpcio {about['grpcio']}"
    )
    raw_seconds = options.raw_seconds or max(1.0, options.seconds / 2)
    print(f"raw baselines ({raw_seconds:g} s each) ...")
    echo = simulator.run_loop(raw.unary_echo(raw_seconds))
    raw_unary = echo.calls_per_s
    raw_relay = simulator.run_loop(raw.relay_rate(raw_seconds))
    print(
        f"  grpc.aio unary echo, 64 in flight:               {raw_unary:>10,.0f} calls/s   (CPU per call: "
        f"server {echo.server_cpu_us_per_call:,.0f} us, client {echo.client_cpu_us_per_call:,.0f} us)"
    )
    print(f"  4 processes relaying batches of 100 (streams):   {raw_relay:>10,.0f} orders/s")
    durable = not options.fast_storage
    print(f"backbone ({'durable storage' if durable else 'fsync off'}; starting a system of its own) ...")
    with own_system(durable=durable) as system:
        phases = simulator.run_loop(backbone_phases(options, system))
        report = check(system.database_url, system.redis_url, options.settle_seconds)
    unary, stream, open_loop = phases["unary"], phases["stream"], phases["open_loop"]
    unary_rate = float(unary["accepted_per_s"])
    stream_rate = float(stream["accepted_per_s_settled"])
    ack = open_loop["latency_ms"]["submit_to_ack"]
    invariants_ok = report.status == "ok"
    lost = [
        f"{name}: {problem}"
        for name, figures in phases.items()
        for problem in simulator.problems_of({**figures, "invariants": "ok"})  # the check is below
    ]
    figures: dict[str, Any] = {
        "raw_unary_calls_per_s": round(raw_unary, 1),
        "raw_relay_orders_per_s": round(raw_relay, 1),
        "unary_orders_per_s": round(unary_rate, 1),
        "stream_orders_per_s": round(stream_rate, 1),
        "unary_ratio": _ratio(unary_rate, raw_unary),
        "stream_ratio": _ratio(stream_rate, raw_relay),
        "p99_ms": ack["p99"],
        "invariants_ok": invariants_ok,
        "invariants": report.status,
        "p50_ms": ack["p50"],
        "p99_9_ms": ack["p99_9"],
        "max_ms": ack["max"],
        "raw_unary_server_cpu_us_per_call": echo.server_cpu_us_per_call,
        "raw_unary_client_cpu_us_per_call": echo.client_cpu_us_per_call,
        "open_loop_rate": round(open_loop["rate"], 1),
        "open_loop_answered_per_s": open_loop["answered_per_s"],
        "stream_orders": stream["accepted"],
        "stream_trades": stream["trades"],
        "stream_drain_s": round(stream["settled_span_s"] - stream["measured_s"], 3),
        "stream_window": stream["window"],
        "stream_errors": stream["errors"],
        "unary_errors": unary["errors"],
        "unary_p99_ms": unary["latency_ms"]["submit_to_ack"]["p99"],
        "client_cpu_share_stream": stream["client_cpu_share"],
        "client_cpu_share_open_loop": open_loop["client_cpu_share"],
        "cpu_us_per_order_stream": stream["cpu_us_per_order"],
        "cpu_us_per_order_unary": unary["cpu_us_per_order"],
        "cpu_us_per_order_open_loop": open_loop["cpu_us_per_order"],
        "accounts": options.accounts,
        "symbols": options.symbols,
        "seconds": options.seconds,
        "warmup_s": _warmup(options),
        "durable_storage": durable,
        "problems": lost,
        "machine": about,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print()
    print(f"raw unary echo              {raw_unary:>10,.0f} calls/s")
    print(f"raw 4-hop stream relay      {raw_relay:>10,.0f} orders/s")
    unary_ratio, stream_ratio = figures["unary_ratio"], figures["stream_ratio"]
    print(
        f"unary SubmitOrder           {unary_rate:>10,.0f} orders/s   ratio to raw unary  {unary_ratio:.3f}"
    )
    print(
        f"StreamOrders, settled       {stream_rate:>10,.0f} orders/s   ratio to raw relay  {stream_ratio:.3f}"
        f"   ({stream['accepted']:,} orders, {stream['trades']:,} trades; ledger drain "
        f"{figures['stream_drain_s']:.2f} s after the last answer)"
    )
    print(
        f"open loop at {open_loop['rate']:,.0f}/s: submit->ack p50 {ack['p50']} ms, p99 {ack['p99']} ms, "
        f"p99.9 {ack['p99_9']} ms, max {ack['max']} ms"
    )
    print(
        f"client (this process) CPU: {figures['client_cpu_share_stream']:.0%} of one core in the stream "
        f"closed loop, {figures['client_cpu_share_open_loop']:.0%} in the open loop"
    )
    for name in ("unary", "stream", "open_loop"):
        spent = phases[name]["cpu_us_per_order"]
        parts = ", ".join(f"{part} {us:,.0f}" for part, us in spent.items())
        print(f"CPU per command, {name.replace('_', ' ')} phase (µs): {parts}")
    print(f"invariants: {report.status}")
    if not invariants_ok:
        print("\n".join(report.lines()))
    for problem in lost:
        print(f"LOST OR DUPLICATED: {problem}")
    if options.out:
        Path(options.out).write_text(json.dumps({**figures, "phases": phases}, indent=1) + "\n")
    print(json.dumps(figures, separators=(",", ":")))
    return 0 if invariants_ok and not lost else 1


def main(argv: list[str] | None = None) -> int:
    from ops.perf.options import BENCH_DESCRIPTION, add_bench_arguments

    parser = argparse.ArgumentParser(
        prog="bench_pipeline.py",
        description=BENCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(parser)
    return run(parser.parse_args(argv))
