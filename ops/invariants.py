"""The system's invariants, checked on a live system: what `backbone check` reports.

It reads the stores the services write (the ledger and the trading journal in PostgreSQL, risk's
state in Redis) and never writes. Each check answers OK, VIOLATED (with the offending ids) or
PENDING: the services apply trading's events asynchronously, so a comparison between two of them
is made only once both have applied every event; until then it waits (``settle_seconds``) and then
says how far behind they are.

- entries balance: every journal entry sums to zero per asset;
- assets net to zero: summed over all accounts (system accounts included);
- balances match postings: the ledger's running balances equal the sum of their postings;
- no negative balance: no customer ledger balance and no risk "available" below zero;
- no parked trades: no trade is parked (the ledger could not post it, say a customer balance would
  have gone below zero) and no account is halted behind one; each is listed until an operator
  retries it (RetryParkedTrade);
- journal replays: each trading shard's journal replays (regenerating exactly its journaled
  events), twice to the same state digest, and the rebuilt books are uncrossed with every order's
  quantity conserved;
- trades posted once: every trade the journal holds up to settlement's cursor is posted exactly
  as the engine computed it, or recorded as parked (not posted, not missing: "no parked trades"
  reports it), and the ledger holds no trade the journal does not;
- reservations match open orders: every open order holds exactly what it needs in risk, and risk
  holds nothing for an order that is not open;
- risk matches ledger: risk's per-account totals equal the ledger's balances (plus the parked
  trades, which risk applied from trading's journal while the ledger holds them back);
- fills match the journal: the fills projection ListFills reads holds, up to its mark, one row per
  side of each journaled trade, exactly as the trade records it, and nothing else (PENDING while it
  trails the journal);
- history matches the journal: the report history (StreamExecutions' resume, GetOrder of a closed
  order) holds, up to its mark, per account the reports numbered 1..n without a gap, each the report
  the journal's replay makes, and every journaled new order (PENDING while it trails the journal);
- live engine matches journal (when trading's address is given): the running engine's state
  digest (GetEngineState, asked before the journal is read) equals the digest of the journal's
  replay up to the same sequence; UNCHECKED when trading cannot be asked.

The last four compare against the books the journal rebuilds; when a journal does not replay they
are UNCHECKED (the replay finding is VIOLATED).

Each store is read through its owner's read-only audit module (risk/audit.py, settlement/audit.py,
trading/audit.py): the checker composes the services' views and judges them, but never spells a
Redis key or a table itself.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
import redis

from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath
from backbone.trading.v1 import trading_pb2
from risk import audit as risk_audit
from settlement import audit as ledger_audit
from settlement import ledger
from trading import audit as journal_audit
from trading.book import InvariantViolation
from trading.engine import COMMAND_KINDS, Engine, ReplayError
from trading.fills import client_order_ids, fill_rows
from trading.history import Batch, history_rows
from trading.journal import RISK_KINDS, SETTLEMENT_KINDS

Status = Literal["ok", "violated", "pending", "unchecked"]

# How many offending ids a finding keeps (the count is always whole).
MAX_ITEMS = 1_000

_OPEN = (common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED)


@dataclass
class Finding:
    """One invariant's state: a one-line summary and, when violated, what breaks it."""

    name: str
    status: Status
    summary: str
    items: list[str] = field(default_factory=list)
    count: int = 0

    @classmethod
    def of(cls, name: str, problems: list[str], ok: str, violated: str) -> Finding:
        if not problems:
            return cls(name, "ok", ok)
        return cls(name, "violated", violated.format(n=len(problems)), problems[:MAX_ITEMS], len(problems))


@dataclass
class Report:
    """Every finding of one pass."""

    findings: list[Finding]

    @property
    def status(self) -> Status:
        statuses = {finding.status for finding in self.findings}
        return "violated" if "violated" in statuses else "pending" if "pending" in statuses else "ok"

    def finding(self, name: str) -> Finding:
        return next(f for f in self.findings if f.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "findings": [asdict(f) for f in self.findings]}

    def lines(self, examples: int = 10) -> Iterator[str]:
        width = max(len(f.name) for f in self.findings)
        for f in self.findings:
            yield f"{f.status.upper():<9}{f.name:<{width + 2}}{f.summary}"
            for item in f.items[:examples]:
                yield f"{'':<{width + 11}}- {item}"
            if f.count > examples:
                yield f"{'':<{width + 11}}  ... {f.count - examples} more"


@dataclass
class _Shard:
    """One trading shard as its journal rebuilds it, and how far the consumers have applied it."""

    name: str
    engine: Engine
    trades: dict[int, common_pb2.Trade]  # journal sequence -> trade
    last_event: int  # highest sequence of a trade or release (what risk consumes)
    settlement_cursor: int
    risk_cursor: int
    # What the replay's commands produced, each as (its records, its reports): the report history's
    # expected content.
    batches: Sequence[Batch] = ()

    @property
    def last_trade(self) -> int:
        return max(self.trades, default=0)

    @property
    def settled(self) -> bool:
        return self.settlement_cursor >= self.last_trade

    @property
    def risk_caught_up(self) -> bool:
        return self.risk_cursor >= self.last_event


Held = dict[str, tuple[str, str, int]]  # order id -> (account, asset, amount held)
Figures = dict[str, dict[str, tuple[int, int]]]  # account -> asset -> (total, reserved)
Db = psycopg.Connection[Any]


# --- the ledger ---------------------------------------------------------------------------------


def _entries_balance(db: Db) -> Finding:
    count = ledger_audit.entry_count(db)
    problems = [
        f"entry {e.entry_id} ({e.reference}) sums to {e.total} in {e.asset}"
        for e in ledger_audit.unbalanced_entries(db)
    ]
    problems += [f"entry {i} ({ref}) has no postings" for i, ref in ledger_audit.entries_without_postings(db)]
    return Finding.of(
        "entries balance", problems, f"{count} entries, each sums to zero per asset", "{n} unbalanced"
    )


def _assets_net_to_zero(db: Db) -> Finding:
    sums = ledger_audit.asset_sums(db)
    problems = [f"{asset} sums to {total}" for asset, total in sums.items() if total != 0]
    return Finding.of(
        "assets net to zero", problems, f"{len(sums)} assets net to zero", "{n} assets do not net to zero"
    )


def _balances_match_postings(db: Db) -> Finding:
    problems = [
        f"{d.account_id} {d.asset}: balance {d.balance}, postings sum to {d.postings_total}"
        for d in ledger_audit.balances_differing_from_postings(db)
    ]
    return Finding.of(
        "balances match postings", problems, "every balance equals its postings", "{n} balances differ"
    )


def _no_negative_balance(db: Db, risk_figures: Figures) -> Finding:
    negative = ledger_audit.negative_customer_balances(db)
    problems = [f"ledger: {account} {asset} is {amount}" for account, asset, amount in negative]
    for account, assets in sorted(risk_figures.items()):
        for asset, (total, reserved) in sorted(assets.items()):
            if total - reserved < 0:
                problems.append(f"risk: {account} {asset} available {total - reserved}")
    return Finding.of(
        "no negative balance",
        problems,
        "no customer balance or available amount below zero",
        "{n} below zero",
    )


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _no_parked_trades(
    parked: list[ledger_audit.ParkedTrade], halts: list[ledger_audit.AccountHalt]
) -> Finding:
    problems = [
        f"{p.reference} (journal {p.sequence}) parked for {p.reason} since {_when(p.parked_at)}, "
        f"halting {', '.join(p.account_ids)}: {p.detail}"
        for p in parked
    ]
    problems += [
        f"account {h.account_id} halted since {_when(h.halted_at)} behind {h.reference} ({h.reason})"
        for h in halts
    ]
    if not problems:
        return Finding("no parked trades", "ok", "no trade parked, no account halted")
    accounts = ", ".join(h.account_id for h in halts)
    return Finding(
        "no parked trades",
        "violated",
        f"{len(parked)} trades parked, {len(halts)} accounts halted ({accounts}): "
        "fund the account, then RetryParkedTrade",
        problems[:MAX_ITEMS],
        len(problems),
    )


def _parked_deltas(parked: list[ledger_audit.ParkedTrade]) -> dict[tuple[str, str], int]:
    """(account, asset) -> what the parked trades would add to customer balances once posted."""
    deltas: dict[tuple[str, str], int] = defaultdict(int)
    for p in parked:
        for posting in ledger.trade_entry(p.source, ledger.fill_of(p.trade)).postings:
            if posting.account_id not in ledger.SYSTEM_ACCOUNTS:
                deltas[(posting.account_id, posting.asset)] += posting.amount
    return deltas


# --- trading ------------------------------------------------------------------------------------


# (journal sequence, state digest) of a live engine, per shard.
LiveStates = dict[str, tuple[int, str]]


def _replay_digest_at(engine: Engine, sequence: int) -> Callable[[], str | None]:
    """A probe for replaying into `engine`: call it before each record and once after the last;
    it keeps the engine's digest when the replay stands at `sequence`."""
    seen: list[str] = []

    def probe() -> str | None:
        if not seen and engine.last_sequence == sequence:
            seen.append(engine.state_hash())
        return seen[0] if seen else None

    return probe


def _read_shards(
    db: Db, risk_cursors: dict[str, int], live: LiveStates
) -> tuple[list[_Shard], list[str], list[str]]:
    """Replay every shard's journal; return the shards, the replay problems and the live engines
    whose digest differs from the replay's at their sequence."""
    shards: list[_Shard] = []
    problems: list[str] = []
    live_problems: list[str] = []
    cursors = ledger_audit.stream_cursors(db)
    for name in journal_audit.shards(db):
        records = list(journal_audit.records(db, name))
        engines = [Engine(), Engine()]
        live_sequence, live_digest = live.get(name, (-1, ""))
        probe = _replay_digest_at(engines[0], live_sequence)
        batches: list[tuple[list[trading_pb2.JournalRecord], list[common_pb2.ExecutionReport]]] = []
        try:
            for engine in engines:
                for record in records:
                    if engine is engines[0]:
                        probe()
                        reports = engine.replay(record, reports=True)
                        if record.WhichOneof("record") in COMMAND_KINDS or not batches:
                            batches.append(([record], reports))
                        else:
                            batches[-1][0].append(record)
                    else:
                        engine.replay(record)
                engine.finish_replay()
            engines[0].validate()
        except (ReplayError, InvariantViolation) as error:
            problems.append(f"shard {name}: {error}")
            continue
        if engines[0].state_hash() != engines[1].state_hash():
            problems.append(f"shard {name}: two replays of the same journal differ")
        if live_sequence >= 0:
            replayed = probe()
            if replayed is None:
                live_problems.append(
                    f"shard {name}: the live engine is at sequence {live_sequence}, "
                    f"beyond the journal ({engines[0].last_sequence})"
                )
            elif replayed != live_digest:
                live_problems.append(
                    f"shard {name}: the live engine's state at sequence {live_sequence} differs from "
                    "the journal's replay to it"
                )
        trades = {r.sequence: r.trade for r in records if r.WhichOneof("record") in SETTLEMENT_KINDS}
        events = [r.sequence for r in records if r.WhichOneof("record") in RISK_KINDS]
        shards.append(
            _Shard(
                name=name,
                engine=engines[0],
                trades=trades,
                last_event=max(events, default=0),
                settlement_cursor=cursors.get(name, 0),
                risk_cursor=risk_cursors.get(name, 0),
                batches=batches,
            )
        )
    return shards, problems, live_problems


def _journal_replays(shards: list[_Shard], problems: list[str]) -> Finding:
    records = sum(shard.engine.last_sequence for shard in shards)
    open_orders = sum(1 for shard in shards for o in shard.engine.orders.values() if o.status in _OPEN)
    return Finding.of(
        "journal replays",
        problems,
        f"{len(shards)} shard(s), {records} records replay identically; books uncrossed, "
        f"quantities conserved, {open_orders} open orders",
        "{n} shard problems",
    )


def _fills_match_journal(db: Db, shards: list[_Shard]) -> Finding:
    """The fills projection (ListFills' source) holds, up to its mark, exactly the journal's trades'
    fills; pending while it trails the journal (it is written a moment after each commit)."""
    name = "fills match the journal"
    problems: list[str] = []
    behind: list[str] = []
    fills = trades = 0
    for shard in shards:
        projection = journal_audit.fills_projection(db, shard.name)
        if projection is None:
            behind.append(f"shard {shard.name} has no fills projection yet")
            continue
        mark, stored = projection
        client_order_id_of = client_order_ids(shard.engine.orders)
        expected: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for sequence, trade in shard.trades.items():
            if sequence <= mark:
                trades += 1
                for fill in fill_rows(shard.name, sequence, trade, client_order_id_of):
                    expected[fill[1:4]] = fill[1:]  # by (account, trade id, side), without the shard
        found = {row[:3]: row for row in stored}
        for key, row in sorted(found.items()):
            where = f"shard {shard.name}: the fill of account {key[0]} in trade {key[1]} (side {key[2]})"
            if row[-1] > mark:
                problems.append(f"{where} is past the projection's mark {mark}")
            elif key not in expected:
                problems.append(f"{where} is of no journaled trade")
            elif row != expected[key]:
                problems.append(f"{where} is {row}, its trade says {expected[key]}")
        for key in sorted(expected.keys() - found.keys()):
            problems.append(f"shard {shard.name}: the fill of account {key[0]} in trade {key[1]} is missing")
        fills += len(stored)
        if mark < shard.last_trade:
            behind.append(
                f"shard {shard.name} projected through {mark}, its last trade is at {shard.last_trade}"
            )
    if problems:
        return Finding.of(name, problems, "", "{n} fills differ from the journal")
    if behind:
        return Finding(name, "pending", "the fills projection trails the journal: " + "; ".join(behind))
    return Finding(name, "ok", f"{fills} fills of {trades} trades, each as the journal records it")


def _history_matches_journal(db: Db, shards: list[_Shard]) -> Finding:
    """The report history (StreamExecutions' resume, GetOrder of a closed order) holds, up to its
    mark, exactly the reports the journal's replay makes: per account, numbers 1..n without a gap,
    each the same report of the same command; and every journaled new order as sent. Pending while
    it trails the journal (it is written a moment after each commit)."""
    name = "history matches the journal"
    problems: list[str] = []
    behind: list[str] = []
    reports = 0
    for shard in shards:
        history = journal_audit.report_history(db, shard.name)
        if history is None:
            behind.append(f"shard {shard.name} has no report history yet")
            continue
        mark, stored_reports, stored_orders = history
        expected = history_rows(shard.name, shard.batches, 0)
        expected_reports = {(r[1], r[2]): r[1:] for r in expected.reports if r[6] <= mark}
        found = {(r[0], r[1]): r for r in stored_reports}
        numbers: dict[str, list[int]] = defaultdict(list)
        for key, row in sorted(found.items()):
            numbers[key[0]].append(key[1])
            where = f"shard {shard.name}: report {key[1]} of account {key[0]}"
            if row[5] > mark:
                problems.append(f"{where} is past the history's mark {mark}")
            elif key not in expected_reports:
                problems.append(f"{where} is of no journaled command")
            elif row[:6] != expected_reports[key][:6] or common_pb2.ExecutionReport.FromString(
                row[6]
            ) != common_pb2.ExecutionReport.FromString(expected_reports[key][6]):
                problems.append(f"{where} differs from the journal's replay")
        for account, held in sorted(numbers.items()):
            if held != list(range(1, len(held) + 1)):
                problems.append(
                    f"shard {shard.name}: account {account}'s reports are not numbered 1..{len(held)}"
                )
        for key in sorted(expected_reports.keys() - found.keys()):
            problems.append(f"shard {shard.name}: report {key[1]} of account {key[0]} is missing")
        expected_orders = {r[1]: r[1:] for r in expected.orders if r[4] <= mark}
        found_orders = {r[0]: r for r in stored_orders}
        for order_id in sorted(expected_orders.keys() - found_orders.keys()):
            problems.append(f"shard {shard.name}: new order {order_id} is missing")
        for order_id in sorted(found_orders.keys() - expected_orders.keys()):
            problems.append(f"shard {shard.name}: new order {order_id} is of no journaled command")
        for order_id in sorted(expected_orders.keys() & found_orders.keys()):
            if expected_orders[order_id] != found_orders[order_id]:
                problems.append(f"shard {shard.name}: new order {order_id} differs from the journal's")
        reports += len(stored_reports)
        if mark < shard.engine.last_sequence:
            behind.append(f"shard {shard.name} written through {mark} of {shard.engine.last_sequence}")
    if problems:
        return Finding.of(name, problems, "", "{n} history problems")
    if behind:
        return Finding(name, "pending", "the report history trails the journal: " + "; ".join(behind))
    return Finding(
        name, "ok", f"{reports} reports, numbered without a gap, each as the journal's replay makes it"
    )


def _lines(entry: ledger.Entry) -> list[tuple[str, str, int]]:
    return sorted((p.account_id, p.asset, p.amount) for p in entry.postings)


def _trades_posted_once(db: Db, shards: list[_Shard], parked: list[ledger_audit.ParkedTrade]) -> Finding:
    posted: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for posted_entry in ledger_audit.trade_entries(db):
        posted[posted_entry.reference] += [(p.account_id, p.asset, p.amount) for p in posted_entry.postings]
    # A parked trade is recorded, not posted: not missing ("no parked trades" reports it).
    held = {p.reference: _lines(ledger.trade_entry(p.source, ledger.fill_of(p.trade))) for p in parked}
    problems: list[str] = []
    pending = 0
    known: set[str] = set()
    for shard in shards:
        for sequence, trade in shard.trades.items():
            entry = ledger.trade_entry(shard.name, ledger.fill_of(trade))
            known.add(entry.reference)
            expected = _lines(entry)
            lines = posted.get(entry.reference)
            if entry.reference in held:
                if lines is not None:
                    problems.append(f"{entry.reference} is posted and still parked")
                elif held[entry.reference] != expected:
                    problems.append(f"{entry.reference} is parked as {held[entry.reference]}, not {expected}")
                continue
            if lines is None:
                if sequence <= shard.settlement_cursor:
                    problems.append(f"{entry.reference} (journal {sequence}) is not posted")
                else:
                    pending += 1
                continue
            if sorted(lines) != expected:
                problems.append(f"{entry.reference} is posted as {sorted(lines)}, not {expected}")
    problems += [
        f"{reference} is in the ledger but in no journal" for reference in sorted(posted.keys() - known)
    ]
    problems += [f"{reference} is parked but in no journal" for reference in sorted(held.keys() - known)]
    trades = sum(len(shard.trades) for shard in shards)
    if problems:
        return Finding.of("trades posted once", problems, "", "{n} trades missing, extra or misposted")
    if pending:
        return Finding("trades posted once", "pending", f"{pending} of {trades} trades not posted yet")
    if held:
        return Finding(
            "trades posted once",
            "ok",
            f"{trades} trades: {trades - len(held)} posted once as computed, {len(held)} parked (not posted)",
        )
    return Finding("trades posted once", "ok", f"{trades} trades, each posted once as computed")


def _risk_orders(cache: redis.Redis) -> Held:
    """order id -> (account, asset, amount held) for every reservation risk holds."""
    return {r.order_id: (r.account_id, r.asset, r.amount) for r in risk_audit.reservations(cache)}


def _risk_figures(cache: redis.Redis) -> Figures:
    """account -> asset -> (total, reserved) as risk holds them."""
    return {
        account: {f.asset: (f.total, f.reserved) for f in figures}
        for account, figures in risk_audit.balances(cache)
    }


def _reservations_match_open_orders(shards: list[_Shard], held: Held, figures: Figures) -> Finding:
    behind = [s for s in shards if not s.risk_caught_up]
    if behind:
        lag = ", ".join(f"{s.name} at {s.risk_cursor} of {s.last_event}" for s in behind)
        return Finding("reservations match open orders", "pending", f"risk is applying events ({lag})")
    problems: list[str] = []
    needed: dict[str, tuple[str, str, int]] = {}
    for shard in shards:
        maths = {symbol: InstrumentMath.of(i) for symbol, i in shard.engine.instruments.items()}
        for order in shard.engine.orders.values():
            if order.status in _OPEN:
                # At the price it was reserved at (a repriced post-only order rests at another).
                asset, amount = maths[order.symbol].reservation(
                    order.side, order.reserve_price_ticks, order.leaves_lots
                )
                needed[order.order_id] = (order.account_id, asset, amount)
    for order_id, (account, asset, amount) in sorted(needed.items()):
        holding = held.get(order_id)
        if holding != (account, asset, amount):
            problems.append(
                f"open order {order_id} of {account} needs {amount} {asset}; risk holds {holding}"
            )
    for order_id, (account, asset, amount) in sorted(held.items()):
        if order_id not in needed:
            problems.append(f"order {order_id} of {account} holds {amount} {asset} but is not open")
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for account, asset, amount in held.values():
        sums[(account, asset)] += amount
    for account, assets in sorted(figures.items()):
        for asset, (_, reserved) in sorted(assets.items()):
            if reserved != sums.get((account, asset), 0):
                problems.append(
                    f"{account} {asset}: reserved {reserved}, its orders hold {sums.get((account, asset), 0)}"
                )
    return Finding.of(
        "reservations match open orders",
        problems,
        f"{len(needed)} open orders each hold exactly what they need",
        "{n} reservations differ",
    )


def _risk_matches_ledger(
    db: Db,
    shards: list[_Shard],
    figures: Figures,
    parked: list[ledger_audit.ParkedTrade],
    risk_ledger_cursor: int,
) -> Finding:
    newest_ledger_event = ledger_audit.last_risk_event(db)
    if risk_ledger_cursor < newest_ledger_event:  # deposits reach risk through settlement's outbox
        return Finding(
            "risk matches ledger",
            "pending",
            f"risk has applied ledger events up to {risk_ledger_cursor} of {newest_ledger_event}",
        )
    behind = [s for s in shards if not (s.settled and s.risk_caught_up)]
    if behind:
        lag = ", ".join(
            f"{s.name}: settlement at {s.settlement_cursor}, risk at {s.risk_cursor}, "
            f"journal at {max(s.last_trade, s.last_event)}"
            for s in behind
        )
        return Finding("risk matches ledger", "pending", f"events in flight ({lag})")
    ledger_totals = ledger_audit.customer_balances(db)
    # Risk applied the parked trades (from trading's journal); the ledger holds them back.
    for key, delta in _parked_deltas(parked).items():
        ledger_totals[key] = ledger_totals.get(key, 0) + delta
    risk_totals = {
        (account, asset): total for account, assets in figures.items() for asset, (total, _) in assets.items()
    }
    problems = [
        f"{account} {asset}: ledger {ledger_totals.get((account, asset), 0)}, "
        f"risk {risk_totals.get((account, asset), 0)}"
        for account, asset in sorted(ledger_totals.keys() | risk_totals.keys())
        if ledger_totals.get((account, asset), 0) != risk_totals.get((account, asset), 0)
    ]
    counted = f" (counting {len(parked)} parked trades, which risk applied)" if parked else ""
    return Finding.of(
        "risk matches ledger",
        problems,
        f"{len(ledger_totals)} customer balances equal risk's totals{counted}",
        "{n} balances differ" + counted,
    )


# --- a pass, and passes until settled ----------------------------------------------------------


def live_engine_states(trading_address: str | Sequence[str]) -> tuple[LiveStates, str]:
    """Each shard's (journal sequence, digest) from the running trading service at
    `trading_address` (or each of several: one per shard), or why one could not be asked."""
    import grpc

    from backbone.trading.v1 import trading_pb2, trading_pb2_grpc

    states: LiveStates = {}
    for address in [trading_address] if isinstance(trading_address, str) else trading_address:
        try:
            with grpc.insecure_channel(address) as channel:
                stub = trading_pb2_grpc.TradingServiceStub(channel)  # type: ignore[no-untyped-call]
                state = stub.GetEngineState(trading_pb2.GetEngineStateRequest(), timeout=10.0)
        except grpc.RpcError as error:
            return {}, f"trading at {address} did not answer ({error.code().name})"
        states[state.shard] = (state.journal_sequence, state.state_hash)
    return states, ""


def check_once(
    database_url: str, redis_url: str, trading_address: str | Sequence[str] | None = None
) -> Report:
    """One pass over every invariant.

    The live engines' states (when `trading_address` is given: one address, or every shard's)
    are asked first; every shard's journal is replayed and checked by itself (the ledger as a
    whole): its sequence is
    then in the journal read. Risk's state is read next, then PostgreSQL in one read-only
    snapshot: every event risk had applied is then in the journal read, and the journal, the
    ledger and settlement's cursor agree with each other.
    """
    live: LiveStates = {}
    live_finding = None
    if trading_address:
        live, unreachable = live_engine_states(trading_address)
        if unreachable:
            live_finding = Finding("live engine matches journal", "unchecked", f"not checked: {unreachable}")
    cache = redis.Redis.from_url(redis_url)
    try:
        risk_ready = risk_audit.ready(cache)
        risk_ledger_cursor = risk_audit.ledger_cursor(cache)
        risk_cursors = risk_audit.cursors(cache)
        held = _risk_orders(cache)
        figures = _risk_figures(cache)
        with psycopg.connect(database_url) as db:
            db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            db.read_only = True
            schemas = {"ledger": ledger_audit.has_schema(db), "trading": journal_audit.has_schema(db)}
            missing = [name for name, present in schemas.items() if not present]
            if missing:
                return Report(
                    [
                        Finding(
                            "schemas", "pending", f"no {' or '.join(missing)} schema yet: start the services"
                        )
                    ]
                )
            parked = ledger_audit.parked_trades(db)
            findings = [
                _entries_balance(db),
                _assets_net_to_zero(db),
                _balances_match_postings(db),
                _no_negative_balance(db, figures),
                _no_parked_trades(parked, ledger_audit.account_halts(db)),
            ]
            shards, replay_problems, live_problems = _read_shards(db, risk_cursors, live)
            findings.append(_journal_replays(shards, replay_problems))
            if live and replay_problems:
                live_finding = Finding(
                    "live engine matches journal", "unchecked", "not checked: a journal does not replay"
                )
            elif live:
                live_finding = Finding.of(
                    "live engine matches journal",
                    live_problems,
                    "the running engine's state equals the journal's replay at "
                    + ", ".join(
                        f"{shard} sequence {sequence}" for shard, (sequence, _) in sorted(live.items())
                    ),
                    "{n} shards differ",
                )
            if replay_problems:
                findings += [
                    Finding(name, "unchecked", "not checked: a journal does not replay")
                    for name in (
                        "trades posted once",
                        "reservations match open orders",
                        "risk matches ledger",
                        "fills match the journal",
                        "history matches the journal",
                    )
                ]
            else:
                findings.append(_trades_posted_once(db, shards, parked))
                if risk_ready:
                    findings.append(_reservations_match_open_orders(shards, held, figures))
                    findings.append(_risk_matches_ledger(db, shards, figures, parked, risk_ledger_cursor))
                else:  # its state is being rebuilt: nothing to compare yet
                    findings += [
                        Finding(name, "pending", "risk is rebuilding its state from the ledger and trading")
                        for name in ("reservations match open orders", "risk matches ledger")
                    ]
                findings.append(_fills_match_journal(db, shards))
                findings.append(_history_matches_journal(db, shards))
            if live_finding is not None:
                findings.append(live_finding)
            return Report(findings)
    finally:
        cache.close()


def check(
    database_url: str,
    redis_url: str,
    settle_seconds: float = 0.0,
    on_pass: Callable[[Report], None] | None = None,
    trading_address: str | Sequence[str] | None = None,
) -> Report:
    """Check until every invariant holds or `settle_seconds` have passed; return the last report.

    A live system is never still: a reservation can be taken a moment before its order reaches
    the journal, and the consumers trail the journal. Passes repeat while anything is pending or
    violated, so what remains at the deadline is what did not settle.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        report = check_once(database_url, redis_url, trading_address)
        if on_pass is not None:
            on_pass(report)
        if report.status == "ok" or time.monotonic() >= deadline:
            return report
        time.sleep(0.2)
