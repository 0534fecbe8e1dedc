"""Run the four services as child processes, and keep a system whole: `backbone up` and the tests use this.

Each service runs as ``python -m ops serve <name>`` (the `backbone` command) with the given
environment. A service counts as up when its standard health service answers
SERVING. :class:`ServiceProcesses` starts, stops gracefully (SIGTERM: drain),
kills (SIGKILL) and starts again one service at a time, which is what the fault
tests do by hand.

:class:`Supervisor` is what `backbone up` runs on top: every process it is given
(the four services, and the embedded PostgreSQL and Redis) that dies is started
again, after 0.5 s, then 1, 2, 4, 8 and at most 10 s while it keeps dying; a run
of 30 s or more counts as recovered, so the next death waits 0.5 s again
(:class:`RestartBackoff`). Each death is one ERROR log line (which process, exit
code or signal, restarts so far, the wait, and ``why``: the last error the
service logged in that run, such as a journal that cannot be replayed, so a
service that keeps failing at start says why where its supervisor is watched,
and in `backbone status`), each restart and each return to SERVING an INFO line.
A service is restarted for as long as it takes (it may be failing only because
something it needs is down); an embedded store that dies
:data:`STORE_START_ATTEMPTS` times in a row without ever answering is not going
to (its port is taken, its data folder is damaged), and the supervisor gives up:
`backbone up` then stops everything and says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backbone.runtime.config import ConfigError, Settings
from backbone.runtime.reconnect import Backoff
from backbone.runtime.server import HEALTH_DETAIL_KEY

# Start order: dependencies first; stop order is the reverse. With several trading shards each is
# a process of its own, named by its shard, in the place of "trading" (ServiceProcesses.start_order).
START_ORDER = ("settlement", "trading", "risk", "gateway")
# Each trading shard after the first listens on BACKBONE_TRADING_ADDRESS's port plus this per shard
# (unless BACKBONE_TRADING_SHARDS gives its address).
SHARD_PORT_STEP = 10


@dataclass(frozen=True)
class TradingShardProcess:
    """One trading shard `backbone up` runs: its name, where it listens and the symbols it owns."""

    name: str
    address: str
    symbols: tuple[str, ...]


def trading_shard_processes(settings: Settings, addresses_given: bool) -> tuple[TradingShardProcess, ...]:
    """The shards of BACKBONE_UP_TRADING_SHARDS, each at its BACKBONE_TRADING_SHARDS address (when
    `addresses_given`) or at BACKBONE_TRADING_ADDRESS's port plus SHARD_PORT_STEP per shard after
    the first; () for one trading process owning every symbol."""
    given = dict(settings.trading_shards) if addresses_given else {}
    host, _, port = settings.trading_address.rpartition(":")
    shards = []
    for index, (name, symbols) in enumerate(settings.up_trading_shards):
        address = given.get(name)
        if address is None:
            if addresses_given:
                raise ConfigError(f"BACKBONE_TRADING_SHARDS has no address for the shard {name!r}")
            address = f"{host}:{int(port) + SHARD_PORT_STEP * index}"
        shards.append(TradingShardProcess(name, address, symbols))
    return tuple(shards)


class ServiceFailed(RuntimeError):
    """A service process exited or never became healthy."""


def health_check(address: str, service: str = "", timeout_seconds: float = 1.0) -> tuple[int, str]:
    """The health status a server reports for `service` ("" is the whole server), with its detail.

    The detail is the ``backbone-health-detail`` trailer a Backbone server adds to an entry
    (an outbox's lag and refusal, for example); "" when there is none or the call failed.
    """
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            response, call = stub.Check.with_call(request, timeout=timeout_seconds)  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN, f"no health entry {service!r}"
            return health_pb2.HealthCheckResponse.UNKNOWN, ""
        trailers = dict(call.trailing_metadata() or ())
        return int(response.status), str(trailers.get(HEALTH_DETAIL_KEY, ""))


def health_status(address: str, timeout_seconds: float = 1.0) -> int:
    """The health status a server reports for the whole server ("" service)."""
    return health_check(address, "", timeout_seconds)[0]


# How much of the end of a service's log is searched for its last error.
LAST_ERROR_TAIL_BYTES = 64 * 1024
_LAST_ERROR_MAX_CHARS = 1000


def last_logged_error(path: Path, start: int = 0) -> str | None:
    """The last ERROR or CRITICAL line of a service's JSON log `path` after byte `start`, as
    ``event: detail`` (its ``error`` or ``why`` field), or None when there is none."""
    try:
        with path.open("rb") as log_file:
            end = log_file.seek(0, os.SEEK_END)
            log_file.seek(max(start, end - LAST_ERROR_TAIL_BYTES))
            tail = log_file.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:  # a console line, or the first line of the tail cut in two
            continue
        if not isinstance(entry, dict) or entry.get("level") not in ("error", "critical"):
            continue
        event = str(entry.get("event", ""))
        detail = entry.get("error") or entry.get("why")
        return (f"{event}: {detail}" if detail else event)[:_LAST_ERROR_MAX_CHARS]
    return None


class ServiceProcesses:
    """The service processes of one system: the four services, trading as one process per shard
    when BACKBONE_UP_TRADING_SHARDS names shards (each told its name, address and symbols; the
    others told every shard's address in BACKBONE_TRADING_SHARDS)."""

    def __init__(self, environment: Mapping[str, str], log_dir: Path | None = None) -> None:
        self.environment = dict(environment)
        settings = Settings.from_env(self.environment)
        self.trading_shards = {
            shard.name: shard
            for shard in trading_shard_processes(
                settings, bool(self.environment.get("BACKBONE_TRADING_SHARDS"))
            )
        }
        if self.trading_shards:
            self.environment["BACKBONE_TRADING_SHARDS"] = ",".join(
                f"{shard.name}={shard.address}" for shard in self.trading_shards.values()
            )
            settings = Settings.from_env(self.environment)
        self.settings = settings
        trading = tuple(self.trading_shards) or ("trading",)
        self.start_order = ("settlement", *trading, "risk", "gateway")
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._log_starts: dict[str, int] = {}  # where each service's current run begins in its log

    def address(self, name: str) -> str:
        """Where the process `name` (a service, or a trading shard's process) is reached."""
        shard = self.trading_shards.get(name)
        return shard.address if shard is not None else self.settings.address_of(name)

    def log_path(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir else None

    def start(self, name: str) -> None:
        """Start one service, or one trading shard's process (not waiting for it)."""
        if name not in self.start_order:
            raise ValueError(f"unknown service {name!r}")
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise ServiceFailed(f"{name} is already running (pid {running.pid})")
        self._close_log(name)  # the log of an earlier run of this service
        output: IO[bytes] | int | None = None
        path = self.log_path(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            output = self._logs[name] = open(path, "ab")  # noqa: SIM115 - closed in _close_log
            self._log_starts[name] = output.tell()
        environment = {**os.environ, **self.environment}
        environment.pop("BACKBONE_LISTEN_ADDRESS", None)
        service = name
        shard = self.trading_shards.get(name)
        if shard is not None:
            service = "trading"
            environment["BACKBONE_TRADING_SHARD"] = shard.name
            environment["BACKBONE_TRADING_ADDRESS"] = shard.address
            environment["BACKBONE_TRADING_SYMBOLS"] = ",".join(shard.symbols)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "ops", "serve", service],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            stdin=subprocess.DEVNULL,
        )

    def wait_healthy(self, name: str, timeout_seconds: float = 60.0) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout_seconds
        while True:
            code = process.poll()
            if code is not None:
                why = self.last_error(name)
                because = f": {why}" if why else ""
                hint = self._log_hint(name)
                raise ServiceFailed(f"{name} exited with code {code} while starting{because}{hint}")
            if health_status(self.address(name)) == health_pb2.HealthCheckResponse.SERVING:
                return
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{name} not healthy after {timeout_seconds:g}s{self._log_hint(name)}")
            time.sleep(0.05)

    def last_error(self, name: str) -> str | None:
        """The last error the current (or last) run of `name` logged; None without a log file."""
        path = self.log_path(name)
        return last_logged_error(path, self._log_starts.get(name, 0)) if path is not None else None

    def _log_hint(self, name: str) -> str:
        path = self.log_path(name)
        if path is None or not path.exists():
            return ""
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        return f"; last lines of {path}:\n{tail}"

    def start_all(self, timeout_seconds: float = 60.0) -> None:
        for name in self.start_order:
            self.start(name)
        try:
            for name in self.start_order:
                self.wait_healthy(name, timeout_seconds)
        except BaseException:
            self.stop_all()
            raise

    def stop(self, name: str, timeout_seconds: float = 30.0) -> int:
        """SIGTERM, wait for the drain, SIGKILL if it overruns; return the exit code."""
        return self._end(name, signal.SIGTERM, timeout_seconds)

    def kill(self, name: str) -> int:
        """SIGKILL: the process gets no chance to clean up."""
        return self._end(name, signal.SIGKILL, 10.0)

    def _end(self, name: str, signum: int, timeout_seconds: float) -> int:
        process = self.processes.get(name)
        if process is None:
            return 0
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            try:
                process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._close_log(name)
        return int(process.returncode)

    def _close_log(self, name: str) -> None:
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def stop_all(self, timeout_seconds: float = 30.0) -> None:
        for name in reversed(self.start_order):
            self.stop(name, timeout_seconds)


# --- keeping a system whole: restarts -----------------------------------------------------------

# 0.5 s after the first death, doubling to at most 10 s; a run of 30 s counts as recovered.
RESTART_BACKOFF = Backoff(initial_seconds=0.5, factor=2.0, max_seconds=10.0, reset_after_seconds=30.0)
# An embedded store that dies this many times in a row before answering once is not coming back.
STORE_START_ATTEMPTS = 5
# How long one readiness probe of a (re)starting process may take.
PROBE_TIMEOUT_SECONDS = 0.5


def describe_exit(returncode: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL``, from a Popen return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class RestartBackoff:
    """How long to wait before starting a process again that died; pure (the caller brings the clock).

    The waits are the policy's ceilings without jitter (one supervisor restarting one local
    process has no herd to spread): 0.5, 1, 2, 4, 8, 10, 10, ... seconds with the default policy.
    A run that lasted ``reset_after_seconds`` or more before it died starts the series again.
    """

    def __init__(self, policy: Backoff = RESTART_BACKOFF) -> None:
        self.policy = policy
        self.failures = 0  # deaths since the last run that lasted reset_after_seconds

    def delay_after(self, ran_seconds: float) -> float:
        """Account for a death after `ran_seconds` of running; return the wait before the restart."""
        if ran_seconds >= self.policy.reset_after_seconds:
            self.failures = 0
        self.failures += 1
        return self.policy.ceiling(self.failures - 1)


class Child(ABC):
    """One process a :class:`Supervisor` keeps running."""

    kind = "service"

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address

    @abstractmethod
    def spawn(self) -> None:
        """Start the process again, not waiting for it (it was started once before)."""

    @abstractmethod
    def pid(self) -> int | None:
        """The pid of the current (or last) process."""

    @abstractmethod
    def poll(self) -> int | None:
        """The return code once the process has ended, else None."""

    @abstractmethod
    def ready(self) -> bool:
        """True when the process serves (a quick probe)."""

    def last_error(self) -> str | None:
        """Why the current (or last) run failed, as the process logged it; None when unknown."""
        return None


class ServiceChild(Child):
    """A service of a :class:`ServiceProcesses`; ready when its health says SERVING."""

    def __init__(self, services: ServiceProcesses, name: str) -> None:
        super().__init__(name, services.address(name))
        self.services = services

    def spawn(self) -> None:
        self.services.start(self.name)

    def pid(self) -> int | None:
        process = self.services.processes.get(self.name)
        return process.pid if process is not None else None

    def poll(self) -> int | None:
        process = self.services.processes.get(self.name)
        return process.poll() if process is not None else 0

    def ready(self) -> bool:
        return health_status(self.address, PROBE_TIMEOUT_SECONDS) == health_pb2.HealthCheckResponse.SERVING

    def last_error(self) -> str | None:
        return self.services.last_error(self.name)


class EmbeddedServer(Protocol):
    """What the embedded PostgreSQL and Redis offer a supervisor (backbone.runtime.embedded)."""

    port: int | None
    process: subprocess.Popen[bytes] | None

    def spawn(self) -> None: ...

    def answers(self, timeout_seconds: float = 1.0) -> bool: ...


class StoreChild(Child):
    """An embedded PostgreSQL or Redis, restarted on its port and data folder."""

    kind = "store"

    def __init__(self, name: str, server: EmbeddedServer) -> None:
        super().__init__(name, f"127.0.0.1:{server.port}")
        self.server = server

    def spawn(self) -> None:
        self.server.spawn()

    def pid(self) -> int | None:
        return self.server.process.pid if self.server.process is not None else None

    def poll(self) -> int | None:
        return self.server.process.poll() if self.server.process is not None else 0

    def ready(self) -> bool:
        return self.server.answers(PROBE_TIMEOUT_SECONDS)


class GaveUp(RuntimeError):
    """A supervised process cannot be brought back; the message says which and why."""


@dataclass
class Tracked:
    """What the supervisor knows about one child."""

    child: Child
    backoff: RestartBackoff
    state: str = "running"  # starting (not serving yet), running, restarting (waiting), failed
    restarts: int = 0
    started: float = 0.0  # clock of the current run's start
    started_wall: float = 0.0  # the same, as wall-clock time for other processes to read
    answered: bool = True  # the current run has served once
    failed_starts: int = 0  # consecutive runs that died before serving once
    last_exit: str | None = None
    last_error: str | None = None  # the last error the process logged before that exit
    down_since: float = 0.0
    restart_due: float = 0.0
    restart_due_wall: float = 0.0


class Supervisor:
    """Restarts the children that die, with backoff; `tick()` does one round, `up` calls it in a loop.

    The children are running and serving when handed over. Nothing is restarted once
    `stopping()` is true (Ctrl-C reaches the services too, and they exit by themselves).
    `on_change` is called after every round that changed something, for the status file.
    """

    def __init__(
        self,
        children: Sequence[Child],
        *,
        policy: Backoff = RESTART_BACKOFF,
        stopping: Callable[[], bool] = lambda: False,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        logger: Any = None,
    ) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._stopping = stopping
        self._on_change = on_change
        self._log = logger if logger is not None else structlog.get_logger("backbone.up")
        now, wall = clock(), wall_clock()
        self.tracked = [
            Tracked(child, RestartBackoff(policy), started=now, started_wall=wall) for child in children
        ]

    def tick(self) -> None:
        """Notice deaths, restart what is due, notice returns to serving. Raises GaveUp."""
        changed = False
        for tracked in self.tracked:
            if self._stopping():
                break
            if tracked.state in ("running", "starting"):
                returncode = tracked.child.poll()
                if returncode is not None:
                    self._died(tracked, returncode)
                    changed = True
                elif tracked.state == "starting" and tracked.child.ready():
                    self._serving(tracked)
                    changed = True
            elif tracked.state == "restarting" and self._clock() >= tracked.restart_due:
                self._restart(tracked)
                changed = True
        if changed:
            self._on_change()

    def _died(self, tracked: Tracked, returncode: int) -> None:
        child, now = tracked.child, self._clock()
        tracked.last_exit = describe_exit(returncode)
        tracked.last_error = child.last_error()
        why = {"why": tracked.last_error} if tracked.last_error else {}
        tracked.failed_starts = 0 if tracked.answered else tracked.failed_starts + 1
        delay = tracked.backoff.delay_after(now - tracked.started)
        tracked.down_since = now
        if child.kind == "store" and tracked.failed_starts >= STORE_START_ATTEMPTS:
            tracked.state = "failed"
            self._log.error(
                "process exited; giving up",
                process=child.name,
                exit=tracked.last_exit,
                restarts=tracked.restarts,
                failed_starts=tracked.failed_starts,
                **why,
            )
            self._on_change()
            raise GaveUp(
                f"the embedded {child.name} died {tracked.failed_starts} times in a row before answering "
                f"({tracked.last_exit}); its log is in its data folder"
            )
        tracked.state = "restarting"
        tracked.restart_due = now + delay
        tracked.restart_due_wall = self._wall() + delay
        self._log.error(
            "process exited; restarting",
            process=child.name,
            pid=child.pid(),
            exit=tracked.last_exit,
            restarts=tracked.restarts,
            next_restart_s=delay,
            **why,
        )

    def _restart(self, tracked: Tracked) -> None:
        child = tracked.child
        tracked.restarts += 1
        tracked.started, tracked.started_wall = self._clock(), self._wall()
        tracked.answered = False
        try:
            child.spawn()
        except Exception as error:  # could not even start it: a death like any other
            self._log.error("process could not be started", process=child.name, error=str(error))
            tracked.state = "starting"
            self._died(tracked, 1)
            return
        tracked.state = "starting"
        self._log.info("process restarted", process=child.name, pid=child.pid(), restarts=tracked.restarts)

    def _serving(self, tracked: Tracked) -> None:
        tracked.state = "running"
        tracked.answered = True
        tracked.failed_starts = 0
        self._log.info(
            "process serving again",
            process=tracked.child.name,
            pid=tracked.child.pid(),
            restarts=tracked.restarts,
            down_s=round(self._clock() - tracked.down_since, 2),
        )

    def snapshot(self) -> list[dict[str, Any]]:
        """Each child as the status file records it."""
        return [
            {
                "name": tracked.child.name,
                "kind": tracked.child.kind,
                "address": tracked.child.address,
                "pid": tracked.child.pid(),
                "state": tracked.state,
                "restarts": tracked.restarts,
                "started_at": tracked.started_wall,
                "last_exit": tracked.last_exit,
                "last_error": tracked.last_error,
                "restart_at": tracked.restart_due_wall if tracked.state == "restarting" else None,
            }
            for tracked in self.tracked
        ]
