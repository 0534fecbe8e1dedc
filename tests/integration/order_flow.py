"""A flow of random crossing orders from many accounts, on threads, for the fault tests."""

from __future__ import annotations

import random
import threading
import time

import grpc

from backbone.gateway.v1 import gateway_pb2
from backbone.runtime.errors import from_rpc_error
from tests.integration.gateway_calls import BUY, SELL, Gateway, key, unique, wait_for


class OrderFlow:
    """Threads submitting random crossing orders until stopped; remembers what was accepted."""

    def __init__(
        self, gateway: Gateway, keys: list[str], threads: int = 6, symbols: tuple[str, ...] = ("BTC-USD",)
    ) -> None:
        self.gateway = gateway
        self.keys = keys
        self.symbols = symbols
        self.accepted: dict[str, str] = {}  # order id -> api key
        # order id -> (api key, request) of every order answered OUTCOME_UNKNOWN
        self.unknown: dict[str, tuple[str, gateway_pb2.SubmitOrderRequest]] = {}
        self.outcomes: dict[str, int] = {}
        self.symbol_of: dict[str, str] = {}  # order id -> symbol of every accepted order
        # refusal reason -> count (for example RISK_REBUILDING, INSUFFICIENT_BALANCE)
        self.reasons: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(seed,), daemon=True) for seed in range(threads)
        ]

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            api_key = rng.choice(self.keys)
            side = rng.choice((BUY, SELL))
            ticks = 10_000 + rng.randint(-5, 5)
            request = gateway_pb2.SubmitOrderRequest(
                client_order_id=unique("k"),
                symbol=rng.choice(self.symbols),
                side=side,
                price=f"{ticks // 100}.{ticks % 100:02d}",
                quantity=f"0.{rng.randint(1, 9)}",
            )
            try:
                response = self.gateway.public.SubmitOrder(request, metadata=key(api_key), timeout=10)
                code = "OK"
                with self.lock:
                    self.accepted[response.order.order_id] = api_key
                    self.symbol_of[response.order.order_id] = request.symbol
            except grpc.RpcError as error:
                code = error.code().name
                refusal = from_rpc_error(error)
                with self.lock:
                    self.reasons[refusal.reason] = self.reasons.get(refusal.reason, 0) + 1
                if refusal.reason == "OUTCOME_UNKNOWN":
                    code = "OUTCOME_UNKNOWN"
                    with self.lock:
                        self.unknown[refusal.metadata["order_id"]] = (api_key, request)
                time.sleep(0.02)
            with self.lock:
                self.outcomes[code] = self.outcomes.get(code, 0) + 1

    def __enter__(self) -> OrderFlow:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def wait_more(self, count: int, timeout_seconds: float = 60.0) -> None:
        target = len(self.accepted) + count
        wait_for(lambda: len(self.accepted) >= target, timeout_seconds, what=f"{count} more accepted orders")
