"""A replace whose answer is lost resolves by itself, against real processes.

The gateway's replace grows the order's hold in risk, then sends the replace to trading. Here
trading is stopped (SIGSTOP) the moment the grow goes out to risk (a TCP proxy between the
gateway and risk sees the order id pass), so the replace reaches a process that never reads it:
the caller is answered OUTCOME_UNKNOWN while risk holds the grown hold, marked. Trading is then
killed (the unread replace dies with it) and started again. With no caller action, the gateway's
outcome resolver asks trading to settle the replace; trading fences its replace id, and risk
gives the grow back on the fence's event: the hold returns to what the order needs, and the next
replace is accepted. The lost replace sent to trading afterwards is refused REPLACE_FENCED and
changes nothing; `backbone check` finds every invariant holding, the engine's digest included.

When instead trading's answers are lost from the grow on (a TCP proxy between the gateway and
trading drops them, then cuts the connections), the replace is applied: the resolver learns so,
nothing is fenced, the hold is what trading's OrderReplaced left, and the next replace goes through.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple

import grpc
import psycopg
import pytest

from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc
from tests.conftest import System
from tests.integration.gateway_calls import (
    BUY,
    Gateway,
    funded_account,
    invariants_hold,
    order,
    refused,
    settles_to,
    setup_market,
    wait_for,
)
from tests.integration.test_replace_orders import get, hold, holds_settle, place, replace, reserved
from trading import audit as journal_audit

pytestmark = pytest.mark.integration

REPLACED = common_pb2.EXECUTION_TYPE_REPLACED
# How long the hold may take to come back: trading's restart, then the resolver's next attempt
# (its backoff is at most 5 s, and a call to the stopped trading waits out its 5 s deadline).
RESOLVED_WITHIN_SECONDS = 90.0


class Proxy:
    """A TCP proxy to `target`. Armed with a marker, it calls `on_marker` once, before forwarding
    them, when bytes a client sends contain the marker; told to swallow answers, it drops what the
    target sends until it is cut (its connections closed: clients connect again, and are served)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._marker = b""
        self._on_marker: Callable[[], None] | None = None
        self._swallowing = False
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes, on_marker: Callable[[], None]) -> None:
        with self._lock:
            self._marker, self._on_marker = marker, on_marker

    def swallow_answers(self) -> None:
        with self._lock:
            self._swallowing = True

    def cut(self) -> None:
        """Close every connection (what was swallowed is lost) and answer again."""
        with self._lock:
            self._swallowing = False
            connections, self._connections = self._connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:  # the target is down (restarting): the client connects again later
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        tail = b""
        try:
            while chunk := source.recv(65536):
                with self._lock:
                    if from_client:
                        marker, on_marker = self._marker, self._on_marker
                        if marker and marker in tail + chunk and on_marker is not None:
                            self._marker, self._on_marker = b"", None
                            on_marker()
                        tail = (tail + chunk)[-len(marker) :] if marker else b""
                    elif self._swallowing:
                        continue
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


class Proxied(NamedTuple):
    """The module's system, its gateway reaching risk and trading through proxies."""

    system: System
    risk: Proxy
    trading: Proxy


@pytest.fixture(scope="module")
def proxied(system: System) -> Iterator[Proxied]:
    services = system.services
    risk, trading = Proxy(services.address("risk")), Proxy(services.address("trading"))
    services.stop("gateway")
    direct = dict(services.environment)
    services.environment["BACKBONE_RISK_ADDRESS"] = risk.address
    services.environment["BACKBONE_TRADING_ADDRESS"] = trading.address
    try:
        services.start("gateway")  # risk and trading, and every later start, keep the real addresses
    finally:
        services.environment.clear()
        services.environment.update(direct)
    services.wait_healthy("gateway")
    try:
        yield Proxied(system, risk, trading)
    finally:
        risk.close()
        trading.close()


def fenced_replace_ids(database_url: str) -> list[common_pb2.ReplaceFenced]:
    """The replace fences of every shard's journal, in order (read through trading's audit module)."""
    with psycopg.connect(database_url) as connection:
        return [
            record.replace_fenced
            for shard in journal_audit.shards(connection)
            for record in journal_audit.records(connection, shard)
            if record.HasField("replace_fenced")
        ]


def test_a_replace_whose_answer_is_lost_is_fenced_and_its_grow_given_back(proxied: Proxied) -> None:
    system = proxied.system
    services = system.services
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "RLF-USD", "RLF")
        _, trader = funded_account(gateway, {"USD": "1000"})
        resting = place(gateway, trader, order("RLF-USD", BUY, "100.00", "2"))
        holds_settle(gateway, trader, hold("100.00", "2"))

        trading_pid = services.processes["trading"].pid
        proxied.risk.arm(resting.order_id.encode(), lambda: os.kill(trading_pid, signal.SIGSTOP))
        try:
            lost = refused(lambda: replace(gateway, trader, resting.order_id, price="120.00"))
            assert (lost.code, lost.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.OUTCOME_UNKNOWN)
            # Risk holds the grow, marked: the order cannot be replaced meanwhile.
            assert reserved(gateway, trader) == hold("120.00", "2")
        except BaseException:
            os.kill(trading_pid, signal.SIGCONT)  # leave the system running for the module's teardown
            raise
        # Trading dies with the replace unread, and comes back from its journal.
        assert services.kill("trading") == -signal.SIGKILL
        services.start("trading")
        services.wait_healthy("trading")

        # Nobody asks: the hold returns to what the order needs, and the order is as it was.
        settles_to(
            lambda: reserved(gateway, trader),
            hold("100.00", "2"),
            timeout_seconds=RESOLVED_WITHIN_SECONDS,
            what="USD reserved after the lost replace",
        )
        now = get(gateway, trader, resting.order_id)
        assert (now.price, now.quantity) == ("100.00", "2.0000")
        (fence,) = fenced_replace_ids(system.database_url)
        assert fence.order_id == resting.order_id

        # The next replace is accepted, and holds what it needs.
        answer = replace(gateway, trader, resting.order_id, price="110.00")
        assert [r.execution_type for r in answer.reports] == [REPLACED]
        holds_settle(gateway, trader, hold("110.00", "2"))

    # The lost replace, arriving at trading now, is refused and changes nothing.
    with grpc.insecure_channel(services.address("trading")) as channel:
        stub = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
        late = trading_pb2.ReplaceOrder(
            order_id=fence.order_id,
            account_id=fence.account_id,
            price_ticks=12_000,
            quantity_lots=20_000,
            replace_id=fence.replace_id,
        )
        request = trading_pb2.StreamOrdersRequest(
            sequence=1, commands=[trading_pb2.OrderCommand(replace_order=late)]
        )
        (response,) = list(stub.StreamOrders(iter([request]), timeout=30))
    (report,) = response.results[0].reports
    assert (report.execution_type, report.reject_reason) == (
        common_pb2.EXECUTION_TYPE_REJECTED,
        RejectReason.REPLACE_FENCED.number,
    )
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        assert get(gateway, trader, resting.order_id).price == "110.00"
        assert reserved(gateway, trader) == hold("110.00", "2")
    invariants_hold(system.database_url, system.redis_url, services.address("trading"))


def test_a_replace_applied_whose_answer_is_lost_is_settled_as_applied(proxied: Proxied) -> None:
    system = proxied.system
    with grpc.insecure_channel(system.gateway) as channel:
        gateway = Gateway(channel, system.admin_key)
        setup_market(gateway, "RLA-USD", "RLA")
        _, trader = funded_account(gateway, {"USD": "1000"})
        resting = place(gateway, trader, order("RLA-USD", BUY, "100.00", "2"))
        holds_settle(gateway, trader, hold("100.00", "2"))
        fences = len(fenced_replace_ids(system.database_url))
        gateway_log = system.services.log_path("gateway")
        assert gateway_log is not None
        resolved_before = gateway_log.read_text().count("REPLACE_RESOLUTION_APPLIED")

        # From the grow on, trading's answers to the gateway are lost: the replace is applied.
        proxied.risk.arm(resting.order_id.encode(), proxied.trading.swallow_answers)
        try:
            lost = refused(lambda: replace(gateway, trader, resting.order_id, price="120.00"))
            assert (lost.code, lost.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.OUTCOME_UNKNOWN)
        finally:
            proxied.trading.cut()

        # The resolver learns it was applied: nothing is fenced, and the hold is what OrderReplaced left.
        wait_for(
            lambda: gateway_log.read_text().count("REPLACE_RESOLUTION_APPLIED") > resolved_before,
            timeout_seconds=RESOLVED_WITHIN_SECONDS,
            what="the gateway resolving the replace as applied",
        )
        assert len(fenced_replace_ids(system.database_url)) == fences
        now = get(gateway, trader, resting.order_id)
        assert (now.price, now.quantity) == ("120.00", "2.0000")
        holds_settle(gateway, trader, hold("120.00", "2"))
        answer = replace(gateway, trader, resting.order_id, quantity="1")
        assert [r.execution_type for r in answer.reports] == [REPLACED]
        holds_settle(gateway, trader, hold("120.00", "1"))
    invariants_hold(system.database_url, system.redis_url, system.services.address("trading"))
