"""The server interceptor every service uses.

For each call it takes the request id from the ``x-request-id`` metadata (or
makes one), binds it into structlog's context, turns a raised
:class:`ServiceError` into a status with details, turns any other exception
into INTERNAL (logged with its traceback, never shown to the caller), and
writes the access log: one line per call that failed, or that took longer
than ``SLOW_CALL_MS``; calls that succeeded in time are counted per method and
written as one line per method per ``SUMMARY_SECONDS`` (calls, mean and
longest duration), so a busy order path never writes a line per order.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import psycopg
import psycopg_pool
import redis
import structlog

from backbone.reasons import RejectReason
from backbone.runtime.context import REQUEST_ID_HEADER, new_request_id, request_id_var
from backbone.runtime.errors import ServiceError

log = structlog.get_logger("backbone.access")

Context = grpc.aio.ServicerContext[Any, Any]
Handler = Any  # grpc.RpcMethodHandler; its stubs type the sync flavour only

# Health checks and reflection are polled often; they are not worth a log line each.
_QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# A successful call that took longer than this gets a line of its own.
SLOW_CALL_MS = 250.0
# How often the successful calls of a method are summed up in one line.
SUMMARY_SECONDS = 1.0


class _CallSummary:
    """Successful calls of one method since its last summary line."""

    __slots__ = ("calls", "longest_ms", "started", "total_ms")

    def __init__(self, now: float) -> None:
        self.started = now
        self.calls = 0
        self.total_ms = 0.0
        self.longest_ms = 0.0


_summaries: dict[str, _CallSummary] = {}


def _access_log(method: str, code: grpc.StatusCode, elapsed_ms: float, now: float) -> None:
    """One line for a failed or slow call; successful calls summed up per method and period."""
    if code != grpc.StatusCode.OK or elapsed_ms > SLOW_CALL_MS:
        log.info("call", code=code.name, duration_ms=round(elapsed_ms, 3))
        return
    summary = _summaries.get(method)
    if summary is not None and now - summary.started < SUMMARY_SECONDS:
        summary.calls += 1
        summary.total_ms += elapsed_ms
        summary.longest_ms = max(summary.longest_ms, elapsed_ms)
        return
    # A new period: sum up the last one, and write this call on its own line (a quiet
    # service still shows every call).
    if summary is not None and summary.calls:
        log.info(
            "calls",
            code=code.name,
            calls=summary.calls,
            mean_ms=round(summary.total_ms / summary.calls, 3),
            longest_ms=round(summary.longest_ms, 3),
            seconds=round(now - summary.started, 3),
        )
    _summaries[method] = _CallSummary(now)
    log.info("call", code=code.name, duration_ms=round(elapsed_ms, 3))


def _store_unavailable(error: Exception) -> ServiceError | None:
    """UNAVAILABLE for a PostgreSQL or Redis that cannot be reached or has no free connection."""
    if isinstance(error, psycopg_pool.PoolTimeout | psycopg.OperationalError):
        return ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.DATABASE_UNAVAILABLE,
            "the database cannot be reached or has no free connection now; nothing was done; retry",
        )
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.REDIS_UNAVAILABLE,
            "Redis cannot be reached or has no free connection now; nothing was done; retry",
        )
    return None


class _CallScope:
    """Binds the request id for one call and writes its access log line at the end."""

    def __init__(self, method: str, context: Context) -> None:
        self.method = method
        self.context = context
        metadata = dict(context.invocation_metadata() or ())
        request_id = str(metadata.get(REQUEST_ID_HEADER) or new_request_id())
        self.token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK

    async def fail(self, error: Exception) -> None:
        if isinstance(error, ServiceError):
            self.code = error.code
            self.context.set_trailing_metadata(error.trailing_metadata())
            await self.context.abort(error.code, error.message)
        if isinstance(error, grpc.aio.AbortError | grpc.RpcError):
            code = self.context.code()
            self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise error
        store_down = _store_unavailable(error)
        if store_down is not None:
            # A store that is down or saturated is not the caller's fault nor a bug: retry later.
            log.warning("store unavailable", error=repr(error))
            self.code = store_down.code
            self.context.set_trailing_metadata(store_down.trailing_metadata())
            await self.context.abort(store_down.code, store_down.message)
        self.code = grpc.StatusCode.INTERNAL
        log.exception("unhandled error", error=repr(error))
        internal = ServiceError(
            grpc.StatusCode.INTERNAL,
            RejectReason.INTERNAL_ERROR,
            "internal error; the request id is in the logs",
        )
        self.context.set_trailing_metadata(internal.trailing_metadata())
        await self.context.abort(internal.code, internal.message)

    def close(self) -> None:
        now = time.perf_counter()
        if not self.method.startswith(_QUIET_PREFIXES):
            _access_log(self.method, self.code, (now - self.started) * 1000, now)
        structlog.contextvars.unbind_contextvars("request_id", "method")
        request_id_var.reset(self.token)


def _wrap_unary_response(
    method: str, behavior: Callable[[Any, Context], Awaitable[Any]]
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def wrapped(request_or_iterator: Any, context: Context) -> Any:
        scope = _CallScope(method, context)
        try:
            return await behavior(request_or_iterator, context)
        except asyncio.CancelledError:
            scope.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # fail() aborts the call or re-raises
            await scope.fail(error)
            raise
        finally:
            scope.close()

    return wrapped


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class DrainMark:
    """Whether a stream was ended by the server's drain (set by `_until_draining`)."""

    drained = False


async def _until_draining(
    iterator: AsyncIterator[Any], draining: asyncio.Event, requests: DrainMark | None = None
) -> AsyncIterator[Any]:
    """Items of `iterator` until it ends or the server starts draining, whichever is first.

    Used on a stream's incoming side: at shutdown the handler sees the end of
    its input between two messages, answers what it already took, and returns,
    so a long-lived stream ends cleanly instead of holding the drain for the
    whole grace period.

    Each message is read in a task of its own, which the drain cancels while it waits: a
    message it already read is never lost, as a task that has finished cannot be cancelled.
    The drain's callback does that, rather than an ``asyncio.wait`` on the read and the drain
    for every message (twice the cost per message, on every stream of every service).
    """
    following: asyncio.Future[Any] | None = None

    def drain(_: object) -> None:
        if following is not None:
            following.cancel()  # a read already done stays done: its message is taken

    current = asyncio.current_task()
    stop = asyncio.ensure_future(draining.wait())
    stop.add_done_callback(drain)
    try:
        while not draining.is_set():
            following = asyncio.ensure_future(anext(iterator))
            try:
                item = await following
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if following.cancelled() and draining.is_set() and not (current and current.cancelling()):
                    break  # the drain cancelled the read
                raise
            yield item
        if requests is not None:
            requests.drained = True
    finally:
        stop.cancel()
        if following is not None:
            # The handler stopped reading (it ended the call, or was cancelled): the read in
            # flight fails with the call; take its outcome so asyncio does not report it as
            # never retrieved.
            if not following.done():
                following.cancel()
            following.add_done_callback(_retrieve)


class RequestStream(DrainMark):
    """A bidirectional stream's incoming messages, ended at a message boundary when the server drains.

    ``drained`` tells a handler whose input ended why: True when the server is stopping
    (the handler answers what it took and may end the call with UNAVAILABLE), False when
    the caller closed its side.
    """

    def __init__(self, iterator: AsyncIterator[Any], draining: asyncio.Event) -> None:
        self.drained = False
        self._messages = _until_draining(iterator, draining, self)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages


def _wrap_stream_response(
    method: str,
    behavior: Callable[[Any, Context], AsyncIterator[Any]],
    draining: asyncio.Event,
    streaming_requests: bool,
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def wrapped(request_or_iterator: Any, context: Context) -> AsyncIterator[Any]:
        scope = _CallScope(method, context)
        try:
            if streaming_requests:
                # Bidirectional: end the input at a message boundary; the handler answers what it took.
                async for response in behavior(RequestStream(request_or_iterator, draining), context):
                    yield response
            else:
                # Server streaming (a feed): nothing is in flight between two messages; end it there.
                responses = behavior(request_or_iterator, context)
                if inspect.isawaitable(responses):
                    # A handler that writes with context.write() and returns (the standard health
                    # service's Watch): run it to its end; it has sent its messages itself.
                    await responses
                    return
                mark = DrainMark()
                async for response in _until_draining(responses, draining, mark):
                    yield response
                if mark.drained:
                    # A feed does not end by itself: ended by the drain, it says so (UNAVAILABLE,
                    # which clients retry) rather than OK, which reads as "nothing more will come".
                    raise ServiceError(
                        grpc.StatusCode.UNAVAILABLE,
                        RejectReason.SERVICE_STOPPING,
                        "the service is stopping: this stream ends here; open it again (on another "
                        "instance, or on this one once it is back) to go on",
                    )
        except asyncio.CancelledError:
            scope.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # fail() aborts the call or re-raises
            await scope.fail(error)
            raise
        finally:
            scope.close()

    return wrapped


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Request id, errors and access logs for every handler of a server.

    Setting `draining` ends every open stream at its next message boundary
    (see `_until_draining`); unary calls in flight simply finish.
    """

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        # Each method's handler and its wrapped form: a server's handlers do not change, so a
        # call reuses the wrapping made for the method's first call instead of making its own.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(method, handler.unary_stream, self.draining, False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_response(method, handler.stream_stream, self.draining, True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
