"""Risk state in Redis: atomic Lua scripts, pipelined per batch.

Keys are hashed per account (the account id is the hash tag), so every
script touches one slot and Redis Cluster works; risk/keys.py names them all.

Every batch is one pipeline of EVALSHA calls (one round trip), one call per
account (all of the account's reservations, or legs, of the batch: one slot),
each answering with one reply. Scripts are loaded with SCRIPT LOAD at start and
loaded again when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, cast

import redis.asyncio as redis
import structlog
from google.protobuf import json_format
from redis._parsers.base import _AsyncRESPBase
from redis.exceptions import ConnectionError, InvalidResponse, NoScriptError, ResponseError

from backbone.claims import CLIENT_ORDER_ID_TTL_SECONDS, client_order_id_key
from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2
from risk.exposure import EndReplaceOp, GrowOp, LegOp, OpenOrderHold, ReleaseOp, ReserveOp
from risk.keys import (
    EPOCH_KEY,
    INSTRUMENTS_APPLIED_KEY,
    INSTRUMENTS_KEY,
    LEDGER_CURSOR_KEY,
    ORDER_KEYS,
    READY_KEY,
    REBUILD_KEY,
    REBUILD_LOCK_KEY,
    applied_key,
    balance_only_key,
    balances_key,
    cursor_key,
    order_key,
    parse_order_key,
)

log = structlog.get_logger("backbone.risk")

SCRIPT_NAMES = ("reserve", "leg", "cursor", "instrument", "snapshot", "halt")
# Every key pattern of risk's state, wiped when a rebuild starts (the lock and the rebuild's
# own progress excepted).
STATE_PATTERNS = ("risk:*", "{risk:*")

Call = tuple[str, Sequence[str], Sequence[str]]

# The fields of an order's reservation a listing shows (ListReservations).
RESERVATION_FIELDS = ("symbol", "asset", "amount", "reserved_at", "replacing")
# How many of them every reservation has ('replacing' only while a replace is marked: GrowForReplace).
_ALWAYS_SET = 4
# An HMGET of them in Redis's protocol: what comes before the key, and after it.
_HMGET_HEAD = f"*{2 + len(RESERVATION_FIELDS)}\r\n$5\r\nHMGET\r\n"
_HMGET_FIELDS = "".join(f"${len(field)}\r\n{field}\r\n" for field in RESERVATION_FIELDS)


def _pack(commands: Sequence[Sequence[str]]) -> bytes:
    """`commands` in Redis's protocol (RESP arrays of bulk strings), in one buffer."""
    parts: list[str] = []
    for command in commands:
        parts.append(f"*{len(command)}\r\n")
        parts += [f"${len(item)}\r\n{item}\r\n" for item in command]
    text = "".join(parts)
    if text.isascii():  # then a string's length is its length in bytes
        return text.encode()
    encoded = []
    for command in commands:
        encoded.append(f"*{len(command)}\r\n".encode())
        for item in command:
            data = item.encode()
            encoded.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(encoded)


class _Incomplete(Exception):
    """The buffer ends inside a reply: more bytes are needed."""


def _reply(buffer: bytes, start: int, parser: Any, decode: bool) -> tuple[Any, int]:
    """The RESP reply at `start` of `buffer` and where the next begins; _Incomplete if cut short.

    Bulk and simple strings (decoded when the client decodes), integers, nulls, arrays, and
    errors (as the exception redis-py would raise, returned in place).
    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[start], buffer[start + 1 : end]
    if kind == 36:  # $ bulk string
        length = int(line)
        if length < 0:
            return None, end + 2
        stop = end + 2 + length
        if len(buffer) < stop + 2:
            raise _Incomplete
        value = buffer[end + 2 : stop]
        return (value.decode() if decode else value), stop + 2
    if kind == 58:  # : integer
        return int(line), end + 2
    if kind == 42:  # * array
        count = int(line)
        if count < 0:
            return None, end + 2
        items, position = [], end + 2
        for _ in range(count):
            if buffer[position : position + 1] == b"$":  # a bulk string, read here (the usual item)
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    raise _Incomplete
                length = int(buffer[position + 1 : end])
                if length >= 0:
                    stop = end + 2 + length
                    if len(buffer) < stop + 2:
                        raise _Incomplete
                    value = buffer[end + 2 : stop]
                    items.append(value.decode() if decode else value)
                    position = stop + 2
                    continue
            item, position = _reply(buffer, position, parser, decode)
            items.append(item)
        return items, position
    if kind == 43:  # + simple string
        return (line.decode() if decode else line), end + 2
    if kind == 45:  # - error
        return parser.parse_error(line.decode("utf-8", errors="replace")), end + 2
    if kind == 95:  # _ null (RESP3)
        return None, end + 2
    raise InvalidResponse(f"risk cannot read a Redis reply of kind {chr(kind)!r}")


async def _read_replies(connection: Any, count: int) -> list[Any]:
    """The next `count` replies on `connection`, read in as few reads as the bytes arrive in.

    redis-py's parser reads a reply a line at a time, with several awaits per reply: for a batch's
    hundreds of replies that cost more than the rest of a batch's work in risk. When redis-py's
    pure-Python parser holds nothing of its own (it never does between commands), the replies are
    read here from the connection's stream; otherwise (another parser, a newer redis-py) one at a
    time through redis-py.
    """
    reader, parser = getattr(connection, "_reader", None), getattr(connection, "_parser", None)
    if not (
        isinstance(reader, asyncio.StreamReader)
        and isinstance(parser, _AsyncRESPBase)
        and not parser._buffer
        and not parser._chunks
    ):
        results: list[Any] = []
        for _ in range(count):
            try:
                results.append(await connection.read_response(timeout=math.inf))
            except ResponseError as error:
                results.append(error)
        return results
    decode = bool(connection.encoder.decode_responses)
    replies: list[Any] = []
    buffer, position = b"", 0
    while len(replies) < count:
        chunk = await reader.read(1 << 16)
        if not chunk:
            raise ConnectionError("Redis closed the connection while risk read its replies")
        buffer = buffer[position:] + chunk if position < len(buffer) else chunk
        position = 0
        try:
            while len(replies) < count:
                reply, position = _reply(buffer, position, parser, decode)
                replies.append(reply)
        except _Incomplete:
            continue
    if position != len(buffer):  # more than was asked for: the connection is out of step
        raise InvalidResponse("Redis sent more replies than risk asked for")
    return replies


def instrument_json(instrument: common_pb2.Instrument) -> str:
    """How risk stores an instrument in Redis: proto JSON on one line (readable with redis-cli)."""
    return json_format.MessageToJson(instrument, indent=None)


def script_sources() -> dict[str, str]:
    """Each script's full text: the shared helpers followed by the script."""
    folder = resources.files("risk") / "lua"
    helpers = (folder / "lib.lua").read_text(encoding="utf-8")
    return {
        name: helpers + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES
    }


class ReservationOutcome(NamedTuple):
    """The store's answer to one reserve or release (a named tuple: one is made per order).

    `claim` is what a reserve with a client order id did with its claim (a
    risk_pb2.ClientOrderIdClaim value; UNSPECIFIED when it was not looked at), and with HELD
    `holder` is the order holding it and `holder_ttl_ms` the milliseconds its claim has left.
    """

    accepted: bool
    asset: str = ""
    amount: int = 0
    reason: str = ""
    claim: risk_pb2.ClientOrderIdClaim = risk_pb2.CLIENT_ORDER_ID_CLAIM_UNSPECIFIED
    holder: str = ""
    holder_ttl_ms: int = 0


@dataclass(frozen=True)
class AssetFigures:
    """One asset of one account, in minor units."""

    asset: str
    total: int
    reserved: int

    @property
    def available(self) -> int:
        return self.total - self.reserved


# The outcome of a release when the epoch is gone (it changed nothing), and of one that found
# nothing held.
_REBUILDING = ReservationOutcome(False, reason="RISK_REBUILDING")
_NOTHING_RELEASED = ReservationOutcome(True)
# What a reserve did with its client order id (risk_pb2.ClientOrderIdClaim), and the reason of a
# reserve refused because another order holds it.
_UNLOOKED = risk_pb2.CLIENT_ORDER_ID_CLAIM_UNSPECIFIED
_CLAIMED = risk_pb2.CLIENT_ORDER_ID_CLAIM_CLAIMED
_FREE = risk_pb2.CLIENT_ORDER_ID_CLAIM_FREE
_HELD = risk_pb2.CLIENT_ORDER_ID_CLAIM_HELD
_DUPLICATE = "DUPLICATE_CLIENT_ORDER_ID"


class RiskStateError(RuntimeError):
    """A trading event's leg was refused: applying it would corrupt the state."""

    def __init__(self, leg: LegOp, reason: str, detail: Sequence[str]) -> None:
        self.leg = leg
        self.reason = reason
        self.detail = tuple(detail)
        super().__init__(
            f"{reason}: op {leg.op_id} (sequence {leg.sequence}) of account {leg.account_id} "
            f"order {leg.order_id} refused ({', '.join(self.detail)})"
        )


class StaleEpochError(RuntimeError):
    """The state's epoch is no longer the caller's (a flush or a rebuild): nothing was changed."""


class RiskStore:
    """The risk state of every account, in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._sources = script_sources()
        self._shas: dict[str, str] = {}

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script (again); cheap, and idempotent."""
        shas = {}
        for name, source in self._sources.items():
            shas[name] = str(await self.client.script_load(source))
        self._shas = shas

    async def _run(self, calls: Sequence[Call]) -> list[Any]:
        """Run `calls` as one pipeline of EVALSHA; results in order; errors raised."""
        if not calls:
            return []
        if not self._shas:
            await self.load_scripts()
        results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            log.warning("redis lost the risk scripts, loading them again", calls=len(missing))
            await self.load_scripts()
            retried = await self._pipeline([calls[i] for i in missing])
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        """Send every call in one write on one connection, then read the answers in order.

        What redis-py's pipeline does (without its retry of a whole batch), except that the
        commands are packed here in one go: redis-py packs and encodes each argument on its own,
        which cost a quarter of risk's CPU. An error answer (NOSCRIPT, a script's error) is
        returned in its place; a broken connection raises and is dropped.
        """
        shas = self._shas
        return await self._send(
            [("EVALSHA", shas[name], str(len(keys)), *keys, *args) for name, keys, args in calls]
        )

    async def _send(self, commands: Sequence[Sequence[str]]) -> list[Any]:
        """Send `commands` in one write on one connection; their answers in order (errors in place)."""
        if not commands:
            return []
        return await self._exchange(_pack(commands), len(commands))

    async def _exchange(self, data: bytes, count: int) -> list[Any]:
        """Send `data` (`count` commands in Redis's protocol) in one write; the `count` answers."""
        pool = self.client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(data)
            # One deadline (the connection's socket timeout) for the whole batch's answers, not one
            # timeout context per answer.
            async with asyncio.timeout(connection.socket_timeout):
                return await _read_replies(connection, count)
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)

    # Reservations ---------------------------------------------------------

    async def run_reservations(
        self, ops: Sequence[ReserveOp | ReleaseOp | GrowOp | EndReplaceOp], epoch: str
    ) -> list[ReservationOutcome]:
        """Apply reserves, releases, grows and ends of replaces, each account's in order, in one
        round trip; one outcome each (a grow's amount: what it added; an end's: what it gave back).

        Each account's ops are one script call (one slot). Each runs only in the ready state of
        `epoch`; otherwise it is refused with RISK_REBUILDING and changes nothing. A reserve with
        a client order id claims it in the same step (see reserve.lua): refused with
        DUPLICATE_CLIENT_ORDER_ID (claim HELD) when another order holds it; claim CLAIMED when the
        order holds its reservation, FREE when it was refused after the claim was found free.
        """
        by_account: dict[str, list[int]] = {}
        for index, op in enumerate(ops):
            by_account.setdefault(op.account_id, []).append(index)
        now_ms = str(time.time_ns() // 1_000_000)
        ttl = str(CLIENT_ORDER_ID_TTL_SECONDS)
        calls: list[Call] = []
        for account, indexes in by_account.items():
            keys = [balances_key(account), EPOCH_KEY, READY_KEY]
            args = [epoch, now_ms, ttl]
            for index in indexes:
                op = ops[index]
                keys.append(order_key(account, op.order_id))
                if isinstance(op, ReserveOp):  # one argument: none of its parts has a space
                    if op.client_order_id:
                        keys.append(client_order_id_key(account, op.client_order_id))
                        args.append(
                            f"C {op.asset} {op.amount} {op.side} {op.symbol} {op.price_ticks} {op.order_id}"
                        )
                    else:
                        args.append(f"R {op.asset} {op.amount} {op.side} {op.symbol} {op.price_ticks}")
                elif isinstance(op, GrowOp):
                    args.append(f"G {op.asset} {op.amount} {op.replace_id}")
                elif isinstance(op, EndReplaceOp):
                    args.append(f"E {op.replace_id}")
                else:
                    args.append("L")
            calls.append(("reserve", keys, args))
        outcomes: list[ReservationOutcome] = [_REBUILDING] * len(ops)
        for indexes, reply in zip(by_account.values(), await self._run(calls), strict=True):
            if isinstance(reply, int):  # -1: the epoch is gone, nothing changed
                for index in indexes:
                    op = ops[index]
                    if isinstance(op, ReserveOp | GrowOp):
                        outcomes[index] = ReservationOutcome(False, op.asset, op.amount, _REBUILDING.reason)
                continue
            holders: Iterator[str] = iter(())
            if isinstance(reply, list):  # the answers, then the holders of the '@' answers
                reply, holders = reply[0], iter(reply[1:])
            for index, answer in zip(indexes, reply.split("|"), strict=True):
                op = ops[index]
                mark = answer[0]
                if mark == "+":  # held: the op's own asset and amount
                    assert isinstance(op, ReserveOp)
                    outcomes[index] = ReservationOutcome(
                        True, op.asset, op.amount, claim=_CLAIMED if op.client_order_id else _UNLOOKED
                    )
                elif mark == "!":  # refused
                    assert isinstance(op, ReserveOp | GrowOp)
                    reason = answer[1:]
                    # A reserve is refused for RISK_REBUILDING before its claim is looked at.
                    claim = (
                        _FREE
                        if isinstance(op, ReserveOp) and op.client_order_id and reason != _REBUILDING.reason
                        else _UNLOOKED
                    )
                    outcomes[index] = ReservationOutcome(False, op.asset, op.amount, reason, claim)
                elif mark == "@":  # another order holds the client order id
                    assert isinstance(op, ReserveOp)
                    outcomes[index] = ReservationOutcome(
                        False,
                        op.asset,
                        op.amount,
                        _DUPLICATE,
                        _HELD,
                        next(holders),
                        int(answer[1:]),
                    )
                elif len(answer) == 1:  # a release of an order that held nothing
                    outcomes[index] = _NOTHING_RELEASED
                else:  # held before (its first answer), or released: '<mark><asset> <amount>'
                    asset, amount = answer[1:].split(" ")
                    claimed = mark == "=" and isinstance(op, ReserveOp) and op.client_order_id
                    outcomes[index] = ReservationOutcome(
                        True, asset, int(amount), claim=_CLAIMED if claimed else _UNLOOKED
                    )
        return outcomes

    # Trading events -------------------------------------------------------

    async def apply_legs(self, source: str, legs: Sequence[LegOp], epoch: str) -> int:
        """Apply every leg not applied before, each account's in order, in one round trip, in `epoch`'s state.

        Each account's legs are one script call (one slot). Returns how many were applied (the
        rest were skipped as already applied). Raises RiskStateError naming the first refused
        leg; legs of other accounts in the batch may have been applied, and a redelivery skips
        them. Raises StaleEpochError when the state's epoch is no longer `epoch`.
        """
        by_account: dict[str, list[int]] = {}
        for index, leg in enumerate(legs):
            by_account.setdefault(leg.account_id, []).append(index)
        calls: list[Call] = []
        for account, indexes in by_account.items():
            keys = [balances_key(account), applied_key(account), EPOCH_KEY]
            args = [source, epoch]
            for index in indexes:
                leg = legs[index]
                keys.append(order_key(account, leg.order_id))
                deltas = leg.deltas
                # One argument per leg: op id, cap (after its kind; a replace id for an end of a
                # replace), then each asset and delta (none has a space).
                cap = f"{leg.cap_kind}{leg.replace_id or leg.reservation_cap}"
                if len(deltas) == 2:
                    (first, first_delta), (second, second_delta) = deltas
                    args.append(f"{leg.op_id} {cap} {first} {first_delta} {second} {second_delta}")
                else:
                    args.append(" ".join([str(leg.op_id), cap, *(f"{a} {d}" for a, d in deltas)]))
            calls.append(("leg", keys, args))
        applied = 0
        refusals: list[tuple[int, RiskStateError]] = []
        stale = False
        for indexes, reply in zip(by_account.values(), await self._run(calls), strict=True):
            if isinstance(reply, int):  # how many were applied; -1: the epoch is gone
                if reply < 0:
                    stale = True
                else:
                    applied += reply
                continue
            for index, answer in zip(indexes, reply.split("|"), strict=True):
                if answer == "1":
                    applied += 1
                elif answer != "0":  # '-1 <reason> <detail>...'
                    _, reason, *detail = answer.split(" ")
                    refusals.append((index, RiskStateError(legs[index], reason, detail)))
        if stale:
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; legs of {source} not applied")
        if refusals:
            # A HALTED refusal is the consequence of another; report the cause when there is one.
            ordered = [error for _, error in sorted(refusals, key=lambda refusal: refusal[0])]
            causes = [r for r in ordered if r.reason != "HALTED"]
            raise (causes or ordered)[0]
        return applied

    async def apply_instruments(
        self, source: str, instruments: Sequence[tuple[int, common_pb2.Instrument]], epoch: str
    ) -> list[bool]:
        """Store each (sequence, instrument) of `source` not applied before, in order, in one round trip.

        Each instrument is written together with its sequence (one script), so a
        redelivered event is skipped. One answer each: True when stored, False
        when skipped as applied before.
        """
        calls: list[Call] = [
            (
                "instrument",
                (INSTRUMENTS_KEY, INSTRUMENTS_APPLIED_KEY, EPOCH_KEY),
                (source, str(sequence), instrument.symbol, instrument_json(instrument), epoch),
            )
            for sequence, instrument in instruments
        ]
        results = [int(result) for result in await self._run(calls)]
        if any(result < 0 for result in results):
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; instruments not stored")
        return [result == 1 for result in results]

    async def instruments(self) -> list[common_pb2.Instrument]:
        """Every instrument risk has learned; an entry that does not parse is logged and left out."""
        stored = cast(dict[str, str], await self.client.hgetall(INSTRUMENTS_KEY))
        instruments = []
        for symbol, text in stored.items():
            try:
                instrument = json_format.Parse(text, common_pb2.Instrument(), ignore_unknown_fields=True)
            except json_format.ParseError as error:
                log.error("stored instrument does not parse; left out", symbol=symbol, error=str(error))
                continue
            instruments.append(instrument)
        return instruments

    async def cursor(self, source: str) -> int:
        """Highest sequence of `source` fully applied; 0 when none."""
        value = await self.client.get(cursor_key(source))
        return int(value) if value else 0

    async def advance_cursor(self, source: str, sequence: int, epoch: str) -> int:
        """Move the cursor of `source` up to `sequence` (never back); returns it."""
        return await self._advance(cursor_key(source), sequence, epoch)

    async def _advance(self, key: str, sequence: int, epoch: str) -> int:
        (result,) = await self._run([("cursor", (key, EPOCH_KEY), (str(sequence), epoch))])
        if int(result) < 0:
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; {key} not advanced")
        return int(result)

    async def ledger_cursor(self) -> int:
        """Highest ledger risk event applied; 0 when none."""
        value = await self.client.get(LEDGER_CURSOR_KEY)
        return int(value) if value else 0

    async def advance_ledger_cursor(self, sequence: int, epoch: str) -> int:
        return await self._advance(LEDGER_CURSOR_KEY, sequence, epoch)

    async def balance_only_through(self, source: str) -> int:
        """Events of `source` at or below this sequence change totals only (0: none)."""
        value = await self.client.get(balance_only_key(source))
        return int(value) if value else 0

    # The state's epoch and its rebuild ------------------------------------

    async def epochs(self) -> tuple[str | None, str | None]:
        """(the state's epoch, the epoch it is ready in); None where the key is missing."""
        epoch, ready = await self.client.mget(EPOCH_KEY, READY_KEY)
        return (str(epoch) if epoch else None, str(ready) if ready else None)

    async def take_rebuild_lock(self, owner: str, seconds: float) -> bool:
        """Become the process that wipes the old state and starts an epoch (for `seconds`)."""
        return bool(await self.client.set(REBUILD_LOCK_KEY, owner, nx=True, px=int(seconds * 1000)))

    async def drop_epoch(self, epoch: str) -> None:
        """Forget `epoch` (if it is still the state's), so the next look starts a rebuild."""
        (current,) = await self.client.mget(EPOCH_KEY)
        if current == epoch:
            await self.client.delete(EPOCH_KEY)

    async def release_rebuild_lock(self) -> None:
        """Let go of the rebuild lock (the new epoch now keeps other processes from wiping)."""
        await self.client.delete(REBUILD_LOCK_KEY)

    async def start_epoch(self, epoch: str) -> int:
        """Wipe every key of the old state, then start `epoch` (not ready); returns keys deleted.

        Only the holder of the rebuild lock calls it, once nothing of an older epoch can
        write any more (every writer checks the epoch key, which a flush removed).
        """
        deleted = 0
        for pattern in STATE_PATTERNS:
            batch: list[str] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                if key == REBUILD_LOCK_KEY:
                    continue
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(await self.client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self.client.delete(*batch))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(REBUILD_KEY, "epoch", epoch)
            pipe.set(EPOCH_KEY, epoch)
            await pipe.execute()
        return deleted

    async def rebuild_progress(self) -> dict[str, str]:
        """The rebuild hash (empty when no rebuild is under way)."""
        return cast(dict[str, str], await self.client.hgetall(REBUILD_KEY))

    async def mark_rebuild(self, epoch: str, field: str, value: str) -> None:
        """Record a step of `epoch`'s rebuild (nothing when another rebuild replaced it)."""
        (current,) = await self.client.mget(EPOCH_KEY)
        if current != epoch:
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}")
        await self.client.hset(REBUILD_KEY, field, value)

    async def write_balances(self, epoch: str, balances: Sequence[tuple[str, str, int]]) -> None:
        """Set (account, asset, total) from the ledger into `epoch`'s state."""
        calls: list[Call] = [
            (
                "snapshot",
                (balances_key(account), balances_key(account), EPOCH_KEY),
                (epoch, "balance", asset, str(total)),
            )
            for account, asset, total in balances
        ]
        if any(int(result) < 0 for result in await self._run(calls)):
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; balances not written")

    async def write_halts(self, epoch: str, accounts: Sequence[str]) -> None:
        """Mark the ledger's halted accounts in `epoch`'s state (a rebuild)."""
        calls: list[Call] = [
            ("snapshot", (balances_key(a), balances_key(a), EPOCH_KEY), (epoch, "halt")) for a in accounts
        ]
        if any(int(result) < 0 for result in await self._run(calls)):
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; halts not written")

    async def apply_halts(self, source: str, halts: Sequence[tuple[str, int, bool]], epoch: str) -> int:
        """Halt or resume (account, op id, halted) once each; returns how many were applied."""
        calls: list[Call] = [
            (
                "halt",
                (balances_key(a), applied_key(a), EPOCH_KEY),
                (source, str(op), epoch, "1" if h else "0"),
            )
            for a, op, h in halts
        ]
        results = [int(result) for result in await self._run(calls)]
        if any(result == -2 for result in results):
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; halts not applied")
        return sum(1 for result in results if result == 1)

    async def write_holds(self, epoch: str, holds: Sequence[OpenOrderHold]) -> None:
        """Hold what each open order of trading's snapshot needs, in `epoch`'s state."""
        now_ms = str(time.time_ns() // 1_000_000)
        calls: list[Call] = [
            (
                "snapshot",
                (balances_key(h.account_id), order_key(h.account_id, h.order_id), EPOCH_KEY),
                (epoch, "order", h.asset, str(h.amount), h.side, h.symbol, str(h.price_ticks), now_ms),
            )
            for h in holds
        ]
        if any(int(result) < 0 for result in await self._run(calls)):
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}; reservations not written")

    async def write_cursor(self, epoch: str, key_source: str | None, sequence: int) -> None:
        """Set a cursor (a trading shard's, or the ledger's for None) in `epoch`'s state."""
        key = LEDGER_CURSOR_KEY if key_source is None else cursor_key(key_source)
        await self._advance(key, sequence, epoch)

    async def write_balance_only(self, epoch: str, source: str, sequence: int) -> None:
        await self._advance(balance_only_key(source), sequence, epoch)

    async def store_instruments(self, epoch: str, instruments: Sequence[common_pb2.Instrument]) -> None:
        """Write trading's instruments into `epoch`'s state (a rebuild)."""
        (current,) = await self.client.mget(EPOCH_KEY)
        if current != epoch:
            raise StaleEpochError(f"risk's state is no longer epoch {epoch!r}")
        if instruments:
            await self.client.hset(
                INSTRUMENTS_KEY, mapping={i.symbol: instrument_json(i) for i in instruments}
            )

    async def finish_rebuild(self, epoch: str) -> bool:
        """Make `epoch` ready (reservations may be made again); False when it was replaced."""
        (current,) = await self.client.mget(EPOCH_KEY)
        if current != epoch:
            return False
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(READY_KEY, epoch)
            pipe.delete(REBUILD_KEY)
            await pipe.execute()
        return True

    # Deposits and figures -------------------------------------------------

    async def reservations_page(
        self, cursor: int, count: int
    ) -> tuple[list[tuple[str, str, dict[str, str]]], int]:
        """One SCAN page of order reservations: ((account, order, fields) each, next cursor; 0 at the end).

        The fields are those a listing shows (RESERVATION_FIELDS), read with one HMGET per order
        (half the reply of an HGETALL, which the reconciler's pages paid for every open order).
        """
        ((next_cursor, keys),) = await self._send(
            [("SCAN", str(cursor), "MATCH", ORDER_KEYS, "COUNT", str(count))]
        )
        wanted = [(key, names) for key in keys if (names := parse_order_key(key)) is not None]
        if not wanted:
            return [], int(next_cursor)
        # One HMGET per order, put together here: the same fields after each key.
        text = "".join([f"{_HMGET_HEAD}${len(key)}\r\n{key}\r\n{_HMGET_FIELDS}" for key, _ in wanted])
        if text.isascii():  # then a string's length is its length in bytes
            found = await self._exchange(text.encode(), len(wanted))
        else:
            found = await self._send([("HMGET", key, *RESERVATION_FIELDS) for key, _ in wanted])
        page = []
        for (_, (account, order)), values in zip(wanted, found, strict=True):
            if isinstance(values, Exception):
                raise values
            if None not in values[:_ALWAYS_SET]:
                fields = dict(zip(RESERVATION_FIELDS, values, strict=True))
                if fields["replacing"] is None:
                    del fields["replacing"]
                page.append((account, order, fields))
            elif any(value is not None for value in values):
                fields = {f: v for f, v in zip(RESERVATION_FIELDS, values, strict=True) if v is not None}
                page.append((account, order, fields))
        return page, int(next_cursor)

    async def account_figures(self, account_id: str) -> list[AssetFigures]:
        """Every asset the account has touched, sorted by asset code."""
        fields = cast(dict[str, str], await self.client.hgetall(balances_key(account_id)))
        totals: dict[str, int] = {}
        reserved: dict[str, int] = {}
        for field, value in fields.items():
            asset, _, kind = field.rpartition(":")
            if kind == "total":
                totals[asset] = int(value)
            elif kind == "reserved":
                reserved[asset] = int(value)
        return [
            AssetFigures(asset, totals.get(asset, 0), reserved.get(asset, 0))
            for asset in sorted(totals.keys() | reserved.keys())
        ]

    async def order(self, account_id: str, order_id: str) -> dict[str, str]:
        """An order's reservation record; empty when it holds nothing."""
        return cast(dict[str, str], await self.client.hgetall(order_key(account_id, order_id)))
