"""The command lines of `backbone load` and `backbone bench` (light: imports nothing heavy)."""

from __future__ import annotations

import argparse
import math

LOAD_DESCRIPTION = """\
An order-flow simulator. Many funded accounts trade several symbols whose mid prices move as random
walks: Poisson arrivals of passive limit orders around the mid, marketable limit orders through it and
cancels of the account's own open orders, all drawn from --seed (a run repeats exactly).

Open loop (default): commands fall due at --rate per second and latency counts from when each was due,
so a slow system shows as queueing, not as a slower client. Closed loop (--mode closed): a window of
commands outstanding. --path stream (default) sends through StreamOrders, one stream per account,
batching whatever is due; --path unary uses SubmitOrder and CancelOrder. --ramp steps the rate up until
p99 or the error rate passes its limit and reports the highest sustainable rate (the knee).
--deterministic sends one command at a time and waits for its answer: the same seed then gives the
same trades and the same ledger digest.

Without --target it starts a system of its own (embedded PostgreSQL and Redis, the four services) and
afterwards runs `backbone check` on it; with --target it checks only when given --database-url and
--redis-url. The exit code is 1 when anything was lost or duplicated (an invariant broke, a command
went unanswered, a fill was reported twice, a trade never reached the ledger), 2 on bad options or
a failed setup. The last line printed is one JSON object; --out writes it with the timeline, --plot
draws it.
"""

BENCH_DESCRIPTION = """\
The pipeline benchmark, one process tree and one run: raw gRPC baselines on this machine (a grpc.aio
unary echo; four processes relaying batches of 100 orders through bidirectional streams, each reading
every order), then Backbone on a system of its own (SubmitOrder closed loop; StreamOrders closed loop
counted once every trade is posted in the ledger; StreamOrders open loop at half that rate for the
p99 of submit->ack), then `backbone check`. Prints the figures and their ratios; the last line is one
JSON object. Exit 1 when an invariant fails.
"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction from 0 to 1")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of at least 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return value


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("the system")
    where.add_argument("--target", metavar="HOST:PORT", help="a running gateway (default: start a system)")
    where.add_argument("--admin-key", help="the running system's admin key (with --target)")
    where.add_argument(
        "--database-url", help="with --target: its PostgreSQL, to wait for settlement and check"
    )
    where.add_argument("--redis-url", help="with --target: its Redis, for the invariant check")
    where.add_argument(
        "--fast-storage",
        action="store_true",
        help="own system: fsync off (measures less than `backbone up`, which is durable)",
    )
    where.add_argument(
        "--prefix",
        help="names of this run's assets, symbols (PREFIX0-USD ...) and accounts (prefix-0 ...): "
        "upper-case letters/digits (asset codes are at most 12 long); default SIM on its own system, "
        "a random one on --target",
    )

    flow = parser.add_argument_group("the flow")
    flow.add_argument("--seed", type=whole, default=1, help="seed of the flow and the arrivals (default 1)")
    flow.add_argument("--accounts", type=positive_int, default=20, help="funded accounts (default 20)")
    flow.add_argument("--symbols", type=positive_int, default=4, help="instruments (default 4)")
    flow.add_argument(
        "--mix",
        default="passive=55,marketable=20,ioc=10,cancel=10,replace=5",
        help="shares of passive limit orders, marketable limit orders, marketable IOC orders, cancels "
        "and replaces (a resting order's price moved 1 to 3 ticks) (default %(default)s)",
    )
    flow.add_argument(
        "--volatility",
        type=non_negative,
        default=2.0,
        help="mid price step per order, std dev in ticks (default 2)",
    )

    how = parser.add_argument_group("how it is sent")
    how.add_argument("--path", choices=("stream", "unary"), default="stream", help="default stream")
    how.add_argument(
        "--mode",
        choices=("open", "closed"),
        default="open",
        help="open: at --rate, latency from each command's due time (default); closed: a window outstanding",
    )
    how.add_argument(
        "--rate", type=positive_float, default=1000.0, help="open loop: commands/s (default 1000)"
    )
    how.add_argument("--duration", type=positive_float, default=10.0, help="seconds of traffic (default 10)")
    how.add_argument("--count", type=positive_int, help="stop after this many commands (also)")
    how.add_argument(
        "--warmup",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="open or closed loop: first send this long at the same rate or window, not counted (default 0)",
    )
    how.add_argument(
        "--concurrency",
        type=positive_int,
        help="closed loop: commands outstanding per stream (default 200), or unary calls in flight "
        "(default 64)",
    )
    how.add_argument(
        "--tick-ms",
        type=non_negative,
        default=0.0,
        help="open loop: send what fell due at most once per this many ms (default 0: each order when "
        "due); the wait for the tick counts in the latency",
    )
    how.add_argument(
        "--max-batch",
        type=positive_int,
        default=1000,
        help="most commands per StreamOrders request (<= 1000)",
    )
    how.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=2000,
        help="unary open loop: most calls at once; later ones wait in the client (default 2000)",
    )
    how.add_argument(
        "--no-executions",
        action="store_true",
        help="unary path: no StreamExecutions per account (submit->fill then has only the takers' fills)",
    )
    how.add_argument(
        "--deterministic",
        action="store_true",
        help="one command at a time, each answer awaited (--count commands, default 500): same seed, "
        "same trades and ledger digest",
    )
    how.add_argument(
        "--batch",
        type=positive_int,
        default=1,
        help="--deterministic: commands of one account per request, awaited together (default 1)",
    )

    ramp = parser.add_argument_group("ramp")
    ramp.add_argument("--ramp", action="store_true", help="step the open-loop rate up to the knee")
    ramp.add_argument("--ramp-start", type=positive_float, default=500.0, help="first rate (default 500/s)")
    ramp.add_argument("--ramp-factor", type=positive_float, default=1.5, help="rate multiplier (default 1.5)")
    ramp.add_argument("--ramp-max", type=positive_float, default=200_000.0, help="last rate tried")
    ramp.add_argument("--step-seconds", type=positive_float, default=5.0, help="seconds per step (default 5)")
    ramp.add_argument(
        "--p99-limit-ms", type=positive_float, default=50.0, help="sustainable: p99 submit->ack under this"
    )
    ramp.add_argument(
        "--error-limit", type=fraction, default=0.01, help="sustainable: errors over commands under this"
    )

    out = parser.add_argument_group("output and ending")
    out.add_argument("--out", metavar="FILE.json", help="write the result (with its timeline) here")
    out.add_argument(
        "--plot", metavar="FILE.png", help="draw latency and throughput over time (and the ramp)"
    )
    out.add_argument("--progress", action="store_true", help="a progress line on stderr even when not a tty")
    out.add_argument(
        "--deadline",
        type=positive_float,
        help="hard limit on the run's seconds after setup (default: planned traffic x 2 + 60)",
    )
    out.add_argument(
        "--settle-seconds",
        type=positive_float,
        default=60.0,
        help="longest wait for the ledger to post every trade, and for the check to settle (default 60)",
    )
    out.add_argument("--no-check", action="store_true", help="skip the invariant check on its own system")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds", type=positive_float, default=10.0, help="length of each timed phase (default 10)"
    )
    parser.add_argument(
        "--raw-seconds", type=positive_float, help="length of each raw baseline (default --seconds / 2)"
    )
    parser.add_argument(
        "--accounts", type=positive_int, default=8, help="accounts, one stream each (default 8)"
    )
    parser.add_argument("--symbols", type=positive_int, default=4, help="instruments (default 4)")
    parser.add_argument(
        "--window",
        type=positive_int,
        default=500,
        help="stream closed loop: orders outstanding per stream (default 500; the gateway takes at most "
        "its max_in_flight and slows the rest down)",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=64, help="unary calls in flight (default 64)"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative,
        help="seconds sent first in each backbone phase, not counted (default: --seconds / 5, at most 2)",
    )
    parser.add_argument("--seed", type=whole, default=1)
    parser.add_argument(
        "--mix",
        default="passive=60,marketable=40,cancel=0",
        help="order mix of the backbone runs (default %(default)s: new orders only, so the unary "
        "phase is SubmitOrder alone)",
    )
    parser.add_argument(
        "--fast-storage", action="store_true", help="fsync off (default: durable, as `backbone up`)"
    )
    parser.add_argument("--out", metavar="FILE.json", help="also write the JSON result here")
    parser.add_argument(
        "--settle-seconds", type=positive_float, default=120.0, help="longest wait for settlement"
    )
