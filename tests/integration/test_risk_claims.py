"""Risk's reserve claims the order's client order id in the same atomic step (reserve.lua), against
a real (embedded) Redis: a claim held by another order refuses the reserve and changes nothing; a
free claim (or the order's own) is taken only when the order holds its reservation."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS, client_order_id_key
from backbone.common.v1 import common_pb2
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2, risk_pb2_grpc
from risk.exposure import ReleaseOp, ReserveOp
from risk.keys import READY_KEY
from risk.store import ReservationOutcome
from tests.integration.conftest import EPOCH, ReadyStore, deposit_through_ledger_stream, make_ready
from tests.integration.test_risk_store import MATH, figures, risk_service, unique

__all__ = ["risk_service"]  # the fixture, shared with the store's tests

CLAIMED = risk_pb2.CLIENT_ORDER_ID_CLAIM_CLAIMED
FREE = risk_pb2.CLIENT_ORDER_ID_CLAIM_FREE
HELD = risk_pb2.CLIENT_ORDER_ID_CLAIM_HELD
UNLOOKED = risk_pb2.CLIENT_ORDER_ID_CLAIM_UNSPECIFIED


def claiming(account: str, order: str, client_order_id: str, amount: int) -> ReserveOp:
    return ReserveOp(account, order, "USD", amount, "BUY", "X-Y", 1, client_order_id)


def shown(outcome: ReservationOutcome) -> tuple[bool, str, int, str]:
    return outcome.accepted, outcome.reason, outcome.claim, outcome.holder


async def test_a_reserve_claims_its_client_order_id_only_when_it_holds(
    store: ReadyStore, client: redis.Redis
) -> None:
    account = unique("claimer")
    await store.deposit(account, "USD", 1_000)
    outcomes = await store.run_reservations(
        [
            claiming(account, "o1", "c1", 600),
            claiming(account, "o2", "c2", 600),  # cannot be afforded: no claim
            claiming(account, "o3", "c1", 100),  # c1 is o1's now: nothing changes
            claiming(account, "o4", "c4", 400),
        ]
    )
    assert [shown(o) for o in outcomes] == [
        (True, "", CLAIMED, ""),
        (False, "INSUFFICIENT_BALANCE", FREE, ""),
        (False, "DUPLICATE_CLIENT_ORDER_ID", HELD, "o1"),
        (True, "", CLAIMED, ""),
    ]
    # Claimed in this very call: the holder's claim has its whole time to live.
    assert outcomes[2].holder_ttl_ms == CLIENT_ORDER_ID_TTL_SECONDS * 1000
    assert await client.get(client_order_id_key(account, "c1")) == "o1"
    assert await client.get(client_order_id_key(account, "c2")) is None
    assert await client.get(client_order_id_key(account, "c4")) == "o4"
    ttl = await client.ttl(client_order_id_key(account, "c1"))
    assert CLIENT_ORDER_ID_TTL_SECONDS - 5 <= ttl <= CLIENT_ORDER_ID_TTL_SECONDS
    assert await store.order(account, "o2") == {} and await store.order(account, "o3") == {}
    assert await figures(store, account) == {"USD": (1_000, 1_000, 0)}


async def test_a_claim_held_elsewhere_refuses_and_changes_nothing(
    store: ReadyStore, client: redis.Redis
) -> None:
    account = unique("holder")
    await store.deposit(account, "USD", 1_000)
    key = client_order_id_key(account, "taken")
    # Held by an order of another attempt, whose id has a '|' (an order id may): read back whole.
    await client.set(key, "other|attempt", ex=100)
    before = await client.pttl(key)
    (outcome,) = await store.run_reservations([claiming(account, "mine", "taken", 10)])
    assert shown(outcome) == (False, "DUPLICATE_CLIENT_ORDER_ID", HELD, "other|attempt")
    assert 0 < outcome.holder_ttl_ms <= before
    assert await client.get(key) == "other|attempt"
    assert await store.order(account, "mine") == {}
    assert await figures(store, account) == {"USD": (1_000, 0, 1_000)}
    # A claim without an expiry (set by hand) says so: -1.
    await client.persist(key)
    (outcome,) = await store.run_reservations([claiming(account, "mine", "taken", 10)])
    assert (outcome.claim, outcome.holder_ttl_ms) == (HELD, -1)


async def test_the_orders_own_claim_and_a_retried_reserve(store: ReadyStore, client: redis.Redis) -> None:
    account = unique("retry")
    await store.deposit(account, "USD", 1_000)
    key = client_order_id_key(account, "c")
    await client.set(key, "o1", ex=50)  # the gateway claimed it for o1 (its one-by-one path)
    (first,) = await store.run_reservations([claiming(account, "o1", "c", 300)])
    assert shown(first) == (True, "", CLAIMED, "")
    assert await client.ttl(key) > 50  # taken again with the full time to live
    # The same reserve again (a redelivered batch): its first answer, the claim still its own.
    (again,) = await store.run_reservations([claiming(account, "o1", "c", 300)])
    assert (again.accepted, again.asset, again.amount, again.claim) == (True, "USD", 300, CLAIMED)
    assert await figures(store, account) == {"USD": (1_000, 300, 700)}
    # A release gives back the hold; the claim stays (the gateway frees a failed attempt's id).
    await store.run_reservations([ReleaseOp(account, "o1")])
    assert await client.get(key) == "o1"


async def test_refusals_before_and_after_the_claim_is_read(store: ReadyStore, client: redis.Redis) -> None:
    account = unique("halted")
    await store.deposit(account, "USD", 1_000)
    await store.write_halts(EPOCH, [account])
    (halted,) = await store.run_reservations([claiming(account, "o1", "h", 10)])
    assert shown(halted) == (False, "ACCOUNT_HALTED", FREE, "")
    await client.set(client_order_id_key(account, "held"), "earlier", ex=100)
    # A retry of an order that holds its id is told so on a halted account too.
    (held,) = await store.run_reservations([claiming(account, "o2", "held", 10)])
    assert shown(held) == (False, "DUPLICATE_CLIENT_ORDER_ID", HELD, "earlier")
    assert await client.get(client_order_id_key(account, "h")) is None
    # Not ready (a rebuild): refused before the claim is read, which the gateway then looks at.
    await client.delete(READY_KEY)
    try:
        (rebuilding,) = await store.run_reservations([claiming(account, "o3", "r", 10)])
    finally:
        await client.set(READY_KEY, EPOCH)
    assert shown(rebuilding) == (False, "RISK_REBUILDING", UNLOOKED, "")
    assert await client.get(client_order_id_key(account, "r")) is None
    # A reserve without a client order id claims nothing.
    (plain,) = await store.run_reservations([claiming(account, "o4", "", 10)])
    assert plain.claim == UNLOOKED


async def test_concurrent_batches_claim_each_id_once_within_the_balance(redis_url: str) -> None:
    # Concurrent batches of one account, their client order ids drawn from one pool shared by
    # every batch: exactly the affordable number is held, each id is claimed by exactly one
    # order (one that holds its reservation), and no refused order leaves a claim.
    account = unique("race")
    affordable, pool = 37, 60
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(4)]
    stores = [ReadyStore(c) for c in clients]
    rng = random.Random(7)
    batches = [
        [claiming(account, f"o{b}-{n}", f"c{rng.randrange(pool)}", 1_000) for n in range(10)]
        for b in range(40)
    ]
    try:
        await stores[0].deposit(account, "USD", affordable * 1_000 + 999)
        answers = await asyncio.gather(
            *(stores[b % len(stores)].run_reservations(batch) for b, batch in enumerate(batches))
        )
        ops = [op for batch in batches for op in batch]
        outcomes = [outcome for batch in answers for outcome in batch]
        held_by: dict[str, list[str]] = defaultdict(list)
        for op, outcome in zip(ops, outcomes, strict=True):
            if outcome.accepted:
                assert outcome.claim == CLAIMED
                held_by[op.client_order_id].append(op.order_id)
            elif outcome.claim == HELD:
                assert outcome.reason == "DUPLICATE_CLIENT_ORDER_ID"
            else:
                assert (outcome.reason, outcome.claim) == ("INSUFFICIENT_BALANCE", FREE)
        assert sum(len(orders) for orders in held_by.values()) == affordable
        assert all(len(orders) == 1 for orders in held_by.values())
        # Every HELD answer names the order that holds the id's reservation.
        for op, outcome in zip(ops, outcomes, strict=True):
            if outcome.claim == HELD:
                assert [outcome.holder] == held_by[op.client_order_id]
        keys = [key async for key in clients[0].scan_iter(match=client_order_id_key(account, "*"))]
        claims = {key.rsplit(":", 1)[1]: await clients[0].get(key) for key in keys}
        assert claims == {coid: orders[0] for coid, orders in held_by.items()}
        total = affordable * 1_000 + 999
        assert await figures(stores[0], account) == {"USD": (total, affordable * 1_000, 999)}
    finally:
        for c in clients:
            await c.aclose()


async def test_the_service_answers_the_claim(
    risk_service: risk_pb2_grpc.RiskServiceStub, client: redis.Redis
) -> None:
    stub = risk_service
    account = unique("svc")
    await deposit_through_ledger_stream(stub, account, "USD", 10**7)

    def reserve(order: str, client_order_id: str) -> risk_pb2.ReservationCommand:
        return risk_pb2.ReservationCommand(
            reserve=risk_pb2.Reserve(
                order_id=order,
                account_id=account,
                symbol="BTC-USD",
                side=common_pb2.SIDE_BUY,
                price_ticks=50_000,
                quantity_lots=10,
                client_order_id=client_order_id,
            )
        )

    call = stub.StreamReservations()
    commands = [
        reserve("o1", "c1"),
        reserve("o2", "c1"),
        reserve("o3", "bad id"),  # a space: not a client order id
        reserve("o4", "x" * 65),  # too long
        reserve("o5", "c5\n"),  # a trailing newline: not part of a valid id
        reserve("o6", ""),  # none: nothing to claim
    ]
    await call.write(risk_pb2.StreamReservationsRequest(sequence=1, commands=commands))
    results = (await call.read()).results
    assert [
        (
            r.order_id,
            r.accepted,
            RejectReason.from_number(r.reject_reason),
            r.client_order_id_claim,
            r.client_order_id_holder,
        )
        for r in results
    ] == [
        ("o1", True, "UNSPECIFIED", CLAIMED, ""),
        ("o2", False, "DUPLICATE_CLIENT_ORDER_ID", HELD, "o1"),
        ("o3", False, "INVALID_CLIENT_ORDER_ID", UNLOOKED, ""),
        ("o4", False, "INVALID_CLIENT_ORDER_ID", UNLOOKED, ""),
        ("o5", False, "INVALID_CLIENT_ORDER_ID", UNLOOKED, ""),
        ("o6", True, "UNSPECIFIED", UNLOOKED, ""),
    ]
    assert results[1].client_order_id_ttl_ms == CLIENT_ORDER_ID_TTL_SECONDS * 1000
    call.cancel()
    # The malformed ids changed nothing: only o1 and o6 hold, only c1 is claimed.
    held = MATH.buy_reservation(50_000, 10)
    assert await figures_of(stub, account) == [("USD", 10**7, 2 * held)]
    keys = [key async for key in client.scan_iter(match=client_order_id_key(account, "*"))]
    assert keys == [client_order_id_key(account, "c1")]


async def figures_of(stub: risk_pb2_grpc.RiskServiceStub, account: str) -> list[tuple[str, int, int]]:
    answer = await stub.GetAccountRisk(risk_pb2.GetAccountRiskRequest(account_id=account))
    return [(a.asset, a.total, a.reserved) for a in answer.assets]


# A reference model of reserve.lua's claiming reserve and release, for one account: ops are
# ("C", order, client order id, amount) or ("L", order), in batches.
_ORDERS = [f"o{n}" for n in range(6)]
_IDS = [f"c{n}" for n in range(4)]
_OP = st.one_of(
    st.tuples(st.just("C"), st.sampled_from(_ORDERS), st.sampled_from(_IDS), st.integers(1, 400)),
    st.tuples(st.just("L"), st.sampled_from(_ORDERS)),
)


def _model(
    balance: int, preset: dict[str, str], batches: list[list[tuple[Any, ...]]]
) -> tuple[list[tuple[bool, str, int, str, int]], int, dict[str, str]]:
    """(each op's (accepted, reason, claim, holder, amount), the amount reserved, the claims),
    starting from the claims `preset` (client order id -> order id)."""
    held: dict[str, int] = {}
    claims = dict(preset)
    answers: list[tuple[bool, str, int, str, int]] = []
    for op in (op for batch in batches for op in batch):
        if op[0] == "L":
            amount = held.pop(op[1], 0)
            answers.append((True, "", UNLOOKED, "", amount))
            continue
        _, order, client_order_id, amount = op
        holder = claims.get(client_order_id)
        if holder is not None and holder != order:
            answers.append((False, "DUPLICATE_CLIENT_ORDER_ID", HELD, holder, amount))
        elif order in held:
            claims[client_order_id] = order
            answers.append((True, "", CLAIMED, "", held[order]))
        elif sum(held.values()) + amount <= balance:
            held[order] = amount
            claims[client_order_id] = order
            answers.append((True, "", CLAIMED, "", amount))
        else:
            answers.append((False, "INSUFFICIENT_BALANCE", FREE, "", amount))
    return answers, sum(held.values()), claims


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    balance=st.integers(0, 1_000),
    # Claims made before: by the gateway for one of these orders (its one-by-one path), or by an
    # order of another attempt (whose id has a '|').
    preset=st.dictionaries(st.sampled_from(_IDS), st.sampled_from([*_ORDERS, "other|attempt"]), max_size=3),
    batches=st.lists(st.lists(_OP, min_size=1, max_size=6), max_size=4),
)
def test_the_script_matches_a_reference_model(
    redis_url: str, balance: int, preset: dict[str, str], batches: list[list[tuple[Any, ...]]]
) -> None:
    account = unique("model")

    async def run() -> tuple[list[tuple[bool, str, int, str, int]], int, dict[str, str]]:
        connection = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await make_ready(connection)
            store = ReadyStore(connection)
            if balance:
                await store.deposit(account, "USD", balance)
            for client_order_id, order in preset.items():
                await connection.set(client_order_id_key(account, client_order_id), order, ex=3_600)
            answers: list[tuple[bool, str, int, str, int]] = []
            for batch in batches:
                ops = [
                    claiming(account, op[1], op[2], op[3]) if op[0] == "C" else ReleaseOp(account, op[1])
                    for op in batch
                ]
                for outcome in await store.run_reservations(ops):
                    answers.append(
                        (outcome.accepted, outcome.reason, outcome.claim, outcome.holder, outcome.amount)
                    )
            reserved = {f.asset: f.reserved for f in await store.account_figures(account)}.get("USD", 0)
            keys = [key async for key in connection.scan_iter(match=client_order_id_key(account, "*"))]
            claims = {key.rsplit(":", 1)[1]: str(await connection.get(key)) for key in keys}
            return answers, reserved, claims
        finally:
            await connection.aclose()

    assert asyncio.run(run()) == _model(balance, preset, batches)
