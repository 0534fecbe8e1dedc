"""The `backbone` command: run one service, or the whole system on an embedded default.

backbone up                  embedded PostgreSQL + Redis (unless configured) and all four services,
                             each restarted with backoff when it dies
backbone status              the processes of a running `backbone up`: health, address, pid, restarts
backbone serve <service>     one service: gateway, risk, trading or settlement
backbone health ADDRESS      exit 0 when that server is SERVING
backbone check               report the system's invariants (ledger, journal, reservations)
backbone load                simulate order flow and measure it (latency, throughput, the knee)
backbone bench               the pipeline benchmark: raw gRPC baselines against the whole pipeline
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import math
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import structlog
from grpc_health.v1 import health_pb2

from backbone.runtime.config import SERVICE_NAMES, ConfigError, Settings, describe
from backbone.runtime.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis
from backbone.runtime.logging import configure_logging
from ops import status as status_file
from ops.perf.options import BENCH_DESCRIPTION, LOAD_DESCRIPTION, add_bench_arguments, add_load_arguments
from ops.supervisor import (
    Child,
    GaveUp,
    ServiceChild,
    ServiceFailed,
    ServiceProcesses,
    StoreChild,
    Supervisor,
    health_check,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backbone",
        description="A gRPC trading system backbone: gateway, risk, trading and settlement.",
        epilog=describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="run the whole system (embedded PostgreSQL and Redis unless their URLs are set); "
        "a process that dies is restarted with backoff",
        epilog=describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--logs", action="store_true", help="print service logs here instead of DATA_DIR/logs/")
    status = commands.add_parser(
        "status",
        help="the processes of the `backbone up` running in BACKBONE_DATA_DIR: health, address, pid, "
        "restarts, uptime; exit 0 when all are SERVING, 1 when one is not, 2 when nothing runs",
    )
    status.add_argument("--json", action="store_true", help="print the status as one line of JSON")
    serve = commands.add_parser(
        "serve",
        help="run one service",
        epilog=describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("service", choices=SERVICE_NAMES)
    health = commands.add_parser(
        "health", help="exit 0 when the server at ADDRESS reports SERVING (for container health checks)"
    )
    health.add_argument("address", help="host:port of a Backbone service")
    health.add_argument(
        "--service",
        default="",
        help="a health entry other than the whole server, for example "
        "backbone.trading.v1.TradingService/outbox/settlement-trades (its detail is printed)",
    )
    check = commands.add_parser(
        "check",
        help="report the system's invariants on a live system; exit 0 when all hold, 1 when one is "
        "violated, 3 when events are still in flight",
        description="Reads PostgreSQL (BACKBONE_DATABASE_URL) and Redis (BACKBONE_REDIS_URL), or the "
        "embedded servers of a running `backbone up` in BACKBONE_DATA_DIR; writes nothing.",
    )
    check.add_argument(
        "--settle",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="keep checking while something is pending or violated, up to this long (default 5)",
    )
    check.add_argument("--json", action="store_true", help="print the report as one line of JSON")
    load = commands.add_parser(
        "load",
        help="simulate order flow (open or closed loop, stream or unary, a ramp to the knee) and measure "
        "latency and throughput; on its own system, check the invariants afterwards",
        description=LOAD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(load)
    bench = commands.add_parser(
        "bench",
        help="the pipeline benchmark: raw gRPC baselines, then unary and stream orders/s end to end, "
        "p99 at half the stream rate, and the invariant check; the last line is JSON",
        description=BENCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(bench)
    return parser


ENDPOINTS_FILE = "endpoints.json"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def check(settings: Settings, settle_seconds: float, as_json: bool) -> int:
    """Report the invariants; the exit code says whether they hold."""
    from ops.invariants import check as check_invariants

    database_url, redis_url = settings.database_url, settings.redis_url
    # The running engine is compared with its journal too when its address is known: set in the
    # environment, or that of a running `backbone up` (an unknown address is not guessed).
    trading_address: str | list[str] | None = None
    if "BACKBONE_TRADING_SHARDS" in os.environ:  # every shard's engine
        trading_address = [address for _, address in settings.trading_shards]
    elif "BACKBONE_TRADING_ADDRESS" in os.environ:
        trading_address = settings.trading_address
    endpoints = settings.data_dir / ENDPOINTS_FILE
    if not (database_url and redis_url) and endpoints.exists():
        running = json.loads(endpoints.read_text())
        database_url = database_url or running["database_url"]
        redis_url = redis_url or running["redis_url"]
        trading_address = (
            trading_address or running.get("trading_addresses") or running.get("trading_address")
        )
    if not (database_url and redis_url):
        print(
            "backbone check needs BACKBONE_DATABASE_URL and BACKBONE_REDIS_URL, or a running "
            f"`backbone up` using {settings.data_dir}",
            file=sys.stderr,
        )
        return 2
    report = check_invariants(database_url, redis_url, settle_seconds, trading_address=trading_address)
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        print("\n".join(report.lines()))
    return {"ok": 0, "violated": 1, "pending": 3}[report.status]


def load(options: argparse.Namespace) -> int:
    """`backbone load`: the order-flow simulator (ops/perf/simulator.py)."""
    from ops.perf.simulator import run as run_load

    return run_load(options)


def bench(options: argparse.Namespace) -> int:
    """`backbone bench`: the pipeline benchmark (ops/perf/bench.py)."""
    from ops.perf.bench import run as run_bench

    return run_bench(options)


def serve(service: str, settings: Settings) -> int:
    """Run one service in this process until SIGTERM/SIGINT."""
    from backbone.runtime.server import EXIT_START_REFUSED, BindError, StartRefused, run

    configure_logging(settings.log_level, settings.log_format, service)
    module = importlib.import_module(f"{service}.app")
    app = module.create_app(settings)
    try:
        run(app, settings, settings.listen_address_of(service))
    except (BindError, ConfigError) as error:
        structlog.get_logger("backbone").error("cannot serve", service=service, error=str(error))
        return 2
    except StartRefused as error:
        structlog.get_logger("backbone").critical("cannot serve", service=service, error=str(error))
        return EXIT_START_REFUSED
    return 0


def _admin_key(settings: Settings, data_dir: Path) -> str:
    if settings.admin_key:
        return settings.admin_key
    path = data_dir / "admin-key"
    if path.exists():
        return path.read_text().strip()
    key = "bba_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _banner(
    settings: Settings, admin_key: str, database_url: str, redis_url: str, log_dir: Path | None
) -> str:
    import shlex

    gateway = settings.gateway_address
    shards = ""
    if len(settings.trading_shards) > 1:  # BACKBONE_UP_TRADING_SHARDS: one trading process per shard
        owned = dict(settings.up_trading_shards)
        shards = "".join(
            f"  trading     {name} at {address} owns {', '.join(owned.get(name, ()))}\n"
            for name, address in settings.trading_shards
        )
    # The README walk-through's first block, word for word after its two variables, which are filled
    # in here: pasting this and then the README's second block is the README's own walk-through.
    setup = r"""
# Assets (decimal places of the smallest unit) and an instrument: tick 0.01 USD, lot 0.0001 BTC,
# 10 bps maker fee, 20 bps taker fee.
grpcurl -plaintext -H "$ADMIN" -d '{"code":"USD","scale":6}' $GW backbone.gateway.v1.AdminService/CreateAsset
grpcurl -plaintext -H "$ADMIN" -d '{"code":"BTC","scale":8}' $GW backbone.gateway.v1.AdminService/CreateAsset
grpcurl -plaintext -H "$ADMIN" -d '{"symbol":"BTC-USD","base_asset":"BTC","quote_asset":"USD",
  "tick_size":"0.01","lot_size":"0.0001","max_quantity":"1000","max_price":"1000000",
  "maker_fee_bps":10,"taker_fee_bps":20}' $GW backbone.gateway.v1.AdminService/CreateInstrument

# Two accounts, each answer carrying the account's API key (shown once); Alice gets 100,000 USD, Bob 2 BTC.
grpcurl -plaintext -H "$ADMIN" -d '{"account_id":"alice"}' $GW backbone.gateway.v1.AdminService/CreateAccount
grpcurl -plaintext -H "$ADMIN" -d '{"account_id":"bob"}' $GW backbone.gateway.v1.AdminService/CreateAccount
grpcurl -plaintext -H "$ADMIN" \
  -d '{"deposit_id":"dep-1","account_id":"alice","asset":"USD","amount":"100000"}' \
  $GW backbone.gateway.v1.AdminService/Deposit
grpcurl -plaintext -H "$ADMIN" \
  -d '{"deposit_id":"dep-2","account_id":"bob","asset":"BTC","amount":"2"}' \
  $GW backbone.gateway.v1.AdminService/Deposit
"""
    return f"""
Backbone is up.

  gateway     {gateway}   (public API: backbone.gateway.v1.GatewayService, AdminService)
  admin key   {admin_key}
{shards}  PostgreSQL  {database_url}
  Redis       {redis_url}
  logs        {log_dir if log_dir else "this terminal"}

Set up a market and two funded accounts: the README walk-through's first block, filled in for this
system (no grpcurl? the README says where to get it, and gives every line as `buf curl`):

ADMIN={shlex.quote(f"x-admin-key: {admin_key}")}
GW={gateway}
{setup}
Then go on with the README walk-through's second block (the orders), in the same shell.
Ctrl-C stops everything.
"""


def _address_of(url: str) -> str:
    """host:port of a database or Redis URL, without its credentials."""
    parsed = urlsplit(url)
    return f"{parsed.hostname}:{parsed.port}" if parsed.port else str(parsed.hostname)


def up(settings: Settings, show_logs: bool) -> int:
    """Run the whole system until Ctrl-C or SIGTERM, restarting what dies; return the exit code."""
    configure_logging(settings.log_level, settings.log_format, "up")
    log = structlog.get_logger("backbone.up")
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(data_dir / "up.lock", "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another `backbone up` is using {data_dir}; stop it first", file=sys.stderr)
        return 1

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # What `backbone status` reads (from another terminal); removed on the way out.
    status_path = data_dir / status_file.STATUS_FILE
    started_at = time.time()
    supervisor: Supervisor | None = None
    externals: list[dict[str, object]] = []

    def record(state: str) -> None:
        processes = [*externals, *(supervisor.snapshot() if supervisor is not None else [])]
        status_file.write_atomically(
            status_path,
            {
                "format": status_file.FORMAT,
                "up_pid": os.getpid(),
                "data_dir": str(data_dir),
                "state": state,
                "started_at": started_at,
                "updated_at": time.time(),
                "processes": processes,
            },
        )

    record("starting")
    postgres = None if settings.database_url else EmbeddedPostgres(data_dir / "postgres")
    cache = None if settings.redis_url else EmbeddedRedis(data_dir / "redis")
    services: ServiceProcesses | None = None
    code = 0
    try:
        database_url = postgres.start() if postgres else settings.database_url
        redis_url = cache.start() if cache else settings.redis_url
        admin_key = _admin_key(settings, data_dir)
        log_dir = None if show_logs else data_dir / "logs"
        environment = {
            **{k: v for k, v in os.environ.items() if k.startswith("BACKBONE_")},
            "BACKBONE_DATABASE_URL": database_url,
            "BACKBONE_REDIS_URL": redis_url,
            "BACKBONE_ADMIN_KEY": admin_key,
        }
        if log_dir is not None:
            environment["BACKBONE_LOG_FORMAT"] = "json"
        services = ServiceProcesses(environment, log_dir)
        # Where the storage is while this runs, for `backbone check` (removed on the way out).
        endpoints = data_dir / ENDPOINTS_FILE
        endpoints.write_text(
            json.dumps(
                {
                    "database_url": database_url,
                    "redis_url": redis_url,
                    "trading_address": settings.trading_address,
                    # Every shard's, for `backbone check` to compare each engine with its journal.
                    "trading_addresses": [address for _, address in services.settings.trading_shards],
                }
            )
            + "\n"
        )
        endpoints.chmod(0o600)  # an external URL may carry a password
        services.start_all()
        children: list[Child] = []
        for name, server, url in (("postgres", postgres, database_url), ("redis", cache, redis_url)):
            if server is not None:
                children.append(StoreChild(name, server))
            else:
                externals.append({"name": name, "kind": "external", "address": _address_of(url)})
        children += [ServiceChild(services, name) for name in services.start_order]
        supervisor = Supervisor(children, stopping=lambda: stopping, on_change=lambda: record("running"))
        record("running")
        print(_banner(services.settings, admin_key, database_url, redis_url, log_dir), flush=True)
        while not stopping:
            supervisor.tick()
            time.sleep(0.2)
    except GaveUp as error:
        log.error("stopping everything", why=str(error))
        print(f"backbone up stops: {error}", file=sys.stderr)
        code = 1
    except (EmbeddedError, ServiceFailed, ConfigError) as error:
        print(f"backbone up failed: {error}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            record("stopping")
        if services is not None:
            print("stopping services...", file=sys.stderr, flush=True)
            services.stop_all()
        if cache is not None:
            cache.stop()
        if postgres is not None:
            postgres.stop()
        (data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        status_path.unlink(missing_ok=True)
        print("stopped.", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if options.command == "serve":
        return serve(options.service, settings)
    if options.command == "health":
        status, detail = health_check(options.address, options.service, 2.0)
        serving = status == health_pb2.HealthCheckResponse.SERVING
        print(("SERVING" if serving else "NOT SERVING") + (f": {detail}" if detail else ""))
        return 0 if serving else 1
    if options.command == "check":
        return check(settings, options.settle, options.json)
    if options.command == "load":
        return load(options)
    if options.command == "bench":
        return bench(options)
    if options.command == "status":
        return status_file.status(settings.data_dir.resolve(), ENDPOINTS_FILE, options.json)
    return up(settings, options.logs)
