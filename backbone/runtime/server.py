"""The one gRPC server runtime used by all four services.

``run_service(app, settings)`` builds a grpc.aio server with the shared
interceptor, bounded message sizes and keepalive policy, the standard health
service and server reflection; binds the listen address (SO_REUSEPORT off, so
a second process cannot silently share the port); starts the app; and on
SIGTERM or SIGINT sets health to NOT_SERVING, stops accepting calls, gives
in-flight calls the grace period to finish, then stops the app (its
background tasks and pools).

An app may also publish health entries of its own beside its services (for
example one per outbox): if it has ``use_health(entries)``, the runtime hands
it a :class:`HealthEntries` before registering it. An entry can carry a
one-line detail, sent with every Check answer for it as the
``backbone-health-detail`` trailing metadata (``grpcurl -v`` prints it).
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from backbone.runtime.config import Settings
from backbone.runtime.interceptors import ServerInterceptor

log = structlog.get_logger("backbone.server")


class ServiceApp(Protocol):
    """What a service's composition root hands the runtime."""

    name: str

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add servicers to `server`; return their full service names."""

    async def start(self) -> None:
        """Start background work; called once the server listens."""

    async def stop(self) -> None:
        """Stop background work and close pools; called after the server drained."""


HEALTH_DETAIL_KEY = "backbone-health-detail"
_HEALTH_DETAIL_MAX_CHARS = 1000


class HealthServicer(health.aio.HealthServicer):
    """The standard health service; an entry with a detail sends it as trailing metadata on Check."""

    def __init__(self) -> None:
        super().__init__()
        self.details: dict[str, Callable[[], str]] = {}

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
    ) -> health_pb2.HealthCheckResponse:
        response = await super().Check(request, context)
        describe = self.details.get(request.service)
        if describe is not None:
            try:
                detail = describe().encode("ascii", "replace").decode()[:_HEALTH_DETAIL_MAX_CHARS]
            except Exception:  # the status answers even when its detail cannot be had
                log.exception("health detail failed", service=request.service)
            else:
                context.set_trailing_metadata(((HEALTH_DETAIL_KEY, detail),))
        return response


class HealthEntries:
    """Health entries an app publishes itself, beside the runtime's own (its services and "")."""

    def __init__(self, servicer: HealthServicer) -> None:
        self._servicer = servicer
        # Entries the app has set itself: the runtime leaves them to it (a rebuild still under way,
        # a dependency still missing, must not read SERVING because the app's start() returned).
        self.claimed: set[str] = set()

    async def set(self, name: str, serving: bool, detail: Callable[[], str] | None = None) -> None:
        """Set entry `name` SERVING or NOT_SERVING; `detail` (called per Check) says why."""
        self.claimed.add(name)
        if detail is not None:
            self._servicer.details[name] = detail
        serving_status = health_pb2.HealthCheckResponse
        await self._servicer.set(name, serving_status.SERVING if serving else serving_status.NOT_SERVING)


@runtime_checkable
class PublishesHealth(Protocol):
    """An app with health entries of its own."""

    def use_health(self, entries: HealthEntries) -> None:
        """Keep `entries` to publish with; called before register()."""


class BindError(RuntimeError):
    """The listen address could not be bound."""


class StartRefused(RuntimeError):
    """An app cannot start for a reason a person must act on; the message says what and why.

    An app's start() raises it (another process owns the trading shard, the journal cannot be
    replayed): `backbone serve` logs the message as one error line and exits with
    EXIT_START_REFUSED, instead of a traceback.
    """


EXIT_START_REFUSED = 3


# Calls that arrived and wait to be taken up by the server's loop. gRPC's defaults (1,000, and
# 3,000 as a hard limit) cancel calls past them at random (the caller sees CANCELLED, as if it
# had given up itself): a burst of a few thousand concurrent unary calls lost some. The services
# bound their own work (flow control on streams, bounded queues) and say RESOURCE_EXHAUSTED or
# UNAVAILABLE when full; this is only a backstop against a flood.
MAX_PENDING_CALLS = 50_000


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_CALLS),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_connection_age_grace_ms", settings.grace_period_seconds * 1000),
    ]


class RunningServer:
    """A started server: its port, health servicer and a way to stop it."""

    def __init__(self, app: ServiceApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.interceptor = ServerInterceptor()
        self.server = grpc.aio.server(interceptors=[self.interceptor], options=server_options(settings))
        self.health = HealthServicer()
        self.port = 0
        self._stopped = asyncio.Event()
        self._stopping = False

    async def start(self, address: str) -> None:
        entries = HealthEntries(self.health)
        if isinstance(self.app, PublishesHealth):
            self.app.use_health(entries)
        names = list(self.app.register(self.server))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as error:
            raise BindError(f"cannot listen on {address}: {error}") from error
        if self.port == 0:
            raise BindError(f"cannot listen on {address}")
        # grpc's health servicer starts with the server as a whole SERVING; it is not until the app is.
        for name in ("", *names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        await self.app.start()
        for name in ("", *names):
            if name not in entries.claimed:
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", address=address, port=self.port, services=names)

    async def stop(self) -> None:
        """Drain and stop; safe to call more than once."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = float(self.settings.grace_period_seconds)
        log.info("draining", grace_period_seconds=grace)
        await self.health.enter_graceful_shutdown()
        self.interceptor.draining.set()
        await self.server.stop(grace)
        try:
            await self.app.stop()
        finally:
            log.info("stopped")
            self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()


async def run_service(app: ServiceApp, settings: Settings, address: str) -> None:
    """Serve `app` on `address` until SIGTERM or SIGINT, then drain and stop.

    A signal while the app is still starting (a trading process waiting for its shard's lease,
    or replaying) ends the start there: the app is stopped and the process exits cleanly, instead
    of the signal waiting for the start to finish (and a supervisor's SIGKILL after it)."""
    running = RunningServer(app, settings)
    loop = asyncio.get_running_loop()
    shutdown = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.set)
    starting = asyncio.ensure_future(running.start(address))
    signalled = asyncio.ensure_future(shutdown.wait())
    try:
        await asyncio.wait((starting, signalled), return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("signal received while starting, stopping")
            starting.cancel()
        await starting
    except BaseException:
        starting.cancel()
        signalled.cancel()
        await running.server.stop(0)
        await app.stop()
        if shutdown.is_set() and starting.cancelled():
            return
        raise
    await signalled
    log.info("signal received, shutting down")
    await running.stop()


# The cyclic garbage collector's thresholds in a service process (gc.set_threshold): young
# collections as often as Python's default (700 allocations: short pauses), older generations
# collected 20 and 100 times less often than by default (10, 10). A service keeps many long-lived
# objects (trading's books and open orders, the gateway's caches), which every full collection walks
# again although they are rarely garbage: on the matching engine's bench run (bench_matching.py,
# which sets the same) full collections went from 15 to 4 and the engine from 45,400-46,200 to
# 51,300 commands/s. Cycles are still collected; memory held by cyclic garbage waits longer.
SERVICE_GC_THRESHOLDS = (700, 20, 100)


def tune_collector() -> None:
    """Set the garbage collector's thresholds a service process runs with (SERVICE_GC_THRESHOLDS)."""
    gc.set_threshold(*SERVICE_GC_THRESHOLDS)


def run(app: ServiceApp, settings: Settings, address: str) -> None:
    """Blocking entry point: the collector's thresholds, uvloop when available, then run_service."""
    tune_collector()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(run_service(app, settings, address))
    else:
        uvloop.run(run_service(app, settings, address))
