"""The ledger's pure rules: what is valid, and which postings a trade or deposit makes.

Nothing here does I/O. Amounts are Python ints in an asset's minor units; a
posting's signed amount is added to its account's balance, so an account's
balance is the sum of its postings. Every entry balances: for each asset its
postings sum to zero (external money flows through ``system:external``, fees
land on ``system:fees``). Ids and limits are checked with :mod:`backbone.ids`, the
rules every service shares.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.ids import INT64_MAX as INT64_MAX
from backbone.reasons import RejectReason

SYSTEM_EXTERNAL = "system:external"
SYSTEM_FEES = "system:fees"
SYSTEM_ACCOUNTS = (SYSTEM_EXTERNAL, SYSTEM_FEES)
# Only this account's balances may go below zero (it is the outside world's side of deposits).
NEGATIVE_ALLOWED = frozenset({SYSTEM_EXTERNAL})

KIND_TRADE = "trade"
KIND_DEPOSIT = "deposit"

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
API_KEY_DIGEST_BYTES = 32


class LedgerError(ValueError):
    """A value the ledger refuses: which field, a reason code, and a sentence saying why."""

    def __init__(self, field: str, reason: RejectReason, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.reason = reason
        self.description = description


class UnbalancedEntry(AssertionError):
    """An entry whose postings do not sum to zero for some asset (a bug, never input)."""


class Posting(NamedTuple):
    """One line of an entry: a signed amount of `asset` on `account_id` (a tuple: a batch makes
    five per trade, and a frozen dataclass costs several times as much to make)."""

    account_id: str
    asset: str
    amount: int


class Entry(NamedTuple):
    """A balanced journal entry before it is stored (a tuple, like Posting: a batch makes one per trade)."""

    kind: str
    reference: str
    postings: tuple[Posting, ...]


@dataclass(frozen=True)
class TradeFill:
    """The amounts of one trade the ledger needs (a subset of common.v1.Trade)."""

    trade_id: int
    buy_account_id: str
    sell_account_id: str
    base_asset: str
    quote_asset: str
    base_amount: int
    quote_amount: int
    buyer_fee: int
    seller_fee: int


def fill_of(trade: common_pb2.Trade) -> TradeFill:
    """The ledger's part of a trade event."""
    return TradeFill(
        trade_id=trade.trade_id,
        buy_account_id=trade.buy_account_id,
        sell_account_id=trade.sell_account_id,
        base_asset=trade.base_asset,
        quote_asset=trade.quote_asset,
        base_amount=trade.base_amount,
        quote_amount=trade.quote_amount,
        buyer_fee=trade.buyer_fee,
        seller_fee=trade.seller_fee,
    )


def _check_id(rule: ids.IdRule, value: object, field: str) -> str:
    """`value` when it is a valid id of `rule`'s kind; LedgerError naming `field` otherwise."""
    if not isinstance(value, str) or not value:
        raise LedgerError(field, RejectReason.REQUIRED, "is required")
    problem = rule.problem(value)
    if problem:
        raise LedgerError(field, rule.reason, problem)
    return value


def check_account_id(value: str, field: str = "account_id") -> str:
    """A customer account id (backbone.ids.ACCOUNT_ID)."""
    return _check_id(ids.ACCOUNT_ID, value, field)


def check_ledger_account(value: str, field: str = "account_id") -> str:
    """A customer account id or one of the system accounts (for read-only look-ups)."""
    if value in SYSTEM_ACCOUNTS:
        return value
    return check_account_id(value, field)


def check_asset_code(value: str, field: str = "asset") -> str:
    """An asset code (backbone.ids.ASSET_CODE)."""
    return _check_id(ids.ASSET_CODE, value, field)


def check_scale(value: int, field: str = "scale") -> int:
    """An asset's decimal places (0 to backbone.ids.MAX_SCALE)."""
    problem = ids.scale_problem(value)
    if problem:
        raise LedgerError(field, RejectReason.INVALID_SCALE, problem)
    return value


def check_source(value: str, field: str = "source") -> str:
    """A trade source, the trading shard's name (backbone.ids.SOURCE)."""
    return _check_id(ids.SOURCE, value, field)


def check_deposit_id(value: str, field: str = "deposit_id") -> str:
    """A deposit id (backbone.ids.DEPOSIT_ID)."""
    return _check_id(ids.DEPOSIT_ID, value, field)


def check_api_key_digest(value: bytes, field: str = "api_key_sha256") -> bytes:
    if not isinstance(value, bytes) or len(value) != API_KEY_DIGEST_BYTES:
        raise LedgerError(
            field, RejectReason.INVALID_API_KEY_DIGEST, "must be a SHA-256 digest (exactly 32 bytes)"
        )
    return value


def check_positive_amount(value: int, field: str = "amount") -> int:
    if not isinstance(value, int) or not 0 < value <= INT64_MAX:
        raise LedgerError(
            field, RejectReason.INVALID_AMOUNT, "must be a positive whole number of minor units"
        )
    return value


def check_list_limit(value: int, field: str = "limit") -> int:
    """The number of entries to list: 0 means the default, else 1..MAX_LIST_LIMIT."""
    if value == 0:
        return DEFAULT_LIST_LIMIT
    if not isinstance(value, int) or not 1 <= value <= MAX_LIST_LIMIT:
        raise LedgerError(
            field,
            RejectReason.INVALID_LIMIT,
            f"must be between 1 and {MAX_LIST_LIMIT} (0 means {DEFAULT_LIST_LIMIT})",
        )
    return value


def trade_reference(source: str, trade_id: int) -> str:
    return f"trade:{source}:{trade_id}"


def deposit_reference(deposit_id: str) -> str:
    return f"deposit:{deposit_id}"


def check_trade(fill: TradeFill, field: str = "trade") -> TradeFill:
    """Refuse a trade whose amounts cannot be posted (each wrong field named)."""
    if not 0 < fill.trade_id <= INT64_MAX:
        raise LedgerError(f"{field}.trade_id", RejectReason.INVALID_TRADE, "must be positive")
    check_account_id(fill.buy_account_id, f"{field}.buy_account_id")
    check_account_id(fill.sell_account_id, f"{field}.sell_account_id")
    check_asset_code(fill.base_asset, f"{field}.base_asset")
    check_asset_code(fill.quote_asset, f"{field}.quote_asset")
    if fill.base_asset == fill.quote_asset:
        raise LedgerError(f"{field}.quote_asset", RejectReason.INVALID_TRADE, "must differ from base_asset")
    for name in ("base_amount", "quote_amount"):
        if not 0 < getattr(fill, name) <= INT64_MAX:
            raise LedgerError(f"{field}.{name}", RejectReason.INVALID_TRADE, "must be positive")
    for name in ("buyer_fee", "seller_fee"):
        if not 0 <= getattr(fill, name) <= INT64_MAX:
            raise LedgerError(f"{field}.{name}", RejectReason.INVALID_TRADE, "must not be negative")
    if fill.seller_fee > fill.quote_amount:
        raise LedgerError(f"{field}.seller_fee", RejectReason.INVALID_TRADE, "must not exceed quote_amount")
    return fill


def _postings(lines: Iterable[tuple[str, str, int]]) -> tuple[Posting, ...]:
    return tuple(Posting(account, asset, amount) for account, asset, amount in lines if amount != 0)


def trade_entry(source: str, fill: TradeFill, field: str = "trade", *, source_checked: bool = False) -> Entry:
    """The balanced entry of one trade.

    Base: buyer +base_amount, seller -base_amount. Quote: buyer
    -(quote_amount + buyer_fee), seller +(quote_amount - seller_fee),
    system:fees +(buyer_fee + seller_fee). Zero amounts are left out.
    `source_checked`: the caller has checked `source` already (a stream checks it once).
    """
    if not source_checked:
        check_source(source)
    check_trade(fill, field)
    postings = _postings(
        (
            (fill.buy_account_id, fill.base_asset, fill.base_amount),
            (fill.sell_account_id, fill.base_asset, -fill.base_amount),
            (fill.buy_account_id, fill.quote_asset, -(fill.quote_amount + fill.buyer_fee)),
            (fill.sell_account_id, fill.quote_asset, fill.quote_amount - fill.seller_fee),
            (SYSTEM_FEES, fill.quote_asset, fill.buyer_fee + fill.seller_fee),
        )
    )
    assert_balanced(postings)
    return Entry(KIND_TRADE, trade_reference(source, fill.trade_id), postings)


class _KnownValid:
    """Ids already found valid under one rule (a bounded set): a batch names the same few
    accounts and assets thousands of times, and a rule's check is a regular expression."""

    LIMIT = 100_000

    def __init__(self, rule: ids.IdRule) -> None:
        self.rule = rule
        self.seen: set[str] = set()

    def valid(self, value: str) -> bool:
        if value in self.seen:
            return True
        if not isinstance(value, str) or not value or self.rule.problem(value) is not None:
            return False
        if len(self.seen) >= self.LIMIT:
            self.seen.clear()
        self.seen.add(value)
        return True


_ACCOUNT_IDS = _KnownValid(ids.ACCOUNT_ID)
_ASSET_CODES = _KnownValid(ids.ASSET_CODE)


_tuple = tuple.__new__  # makes a Posting or an Entry without its __new__'s Python frame


def well_formed_trade_entry(source: str, trade: common_pb2.Trade) -> Entry | None:
    """trade_entry(source, fill_of(trade)) of a trade that passes every check of check_trade and
    has all five lines (no zero fee total, not all of the quote taken as the seller's fee), made
    without the intermediate objects; None for any other trade, which trade_entry judges (and
    names what is wrong with). `source` is checked already (a stream checks it once).

    Ids found valid before are not matched again. The lines are trade_entry's, in its order; they
    balance by construction (base: +b -b; quote: -(q + buyer_fee) + (q - seller_fee) + fees).
    """
    trade_id = trade.trade_id
    buyer = trade.buy_account_id
    seller = trade.sell_account_id
    base = trade.base_asset
    quote = trade.quote_asset
    base_amount = trade.base_amount
    quote_amount = trade.quote_amount
    buyer_fee = trade.buyer_fee
    seller_fee = trade.seller_fee
    if not (
        0 < trade_id <= INT64_MAX
        and 0 < base_amount <= INT64_MAX
        and 0 < quote_amount <= INT64_MAX
        and 0 <= buyer_fee <= INT64_MAX
        and 0 <= seller_fee < quote_amount  # seller_fee == quote_amount leaves out a line
        and (buyer_fee or seller_fee)  # no fee leaves out the fee line
        and base != quote
        and _ACCOUNT_IDS.valid(buyer)
        and _ACCOUNT_IDS.valid(seller)
        and _ASSET_CODES.valid(base)
        and _ASSET_CODES.valid(quote)
    ):
        return None
    return _tuple(
        Entry,
        (
            KIND_TRADE,
            f"trade:{source}:{trade_id}",
            (
                _tuple(Posting, (buyer, base, base_amount)),
                _tuple(Posting, (seller, base, -base_amount)),
                _tuple(Posting, (buyer, quote, -(quote_amount + buyer_fee))),
                _tuple(Posting, (seller, quote, quote_amount - seller_fee)),
                _tuple(Posting, (SYSTEM_FEES, quote, buyer_fee + seller_fee)),
            ),
        ),
    )


def deposit_entry(deposit_id: str, account_id: str, asset: str, amount: int) -> Entry:
    """The balanced entry of a deposit: the account +amount, system:external -amount."""
    check_deposit_id(deposit_id)
    if account_id in SYSTEM_ACCOUNTS or account_id.startswith("system:"):
        raise LedgerError(
            "account_id",
            RejectReason.SYSTEM_ACCOUNT,
            "deposits credit customer accounts, not system accounts",
        )
    check_account_id(account_id)
    check_asset_code(asset)
    check_positive_amount(amount)
    postings = _postings(((account_id, asset, amount), (SYSTEM_EXTERNAL, asset, -amount)))
    assert_balanced(postings)
    return Entry(KIND_DEPOSIT, deposit_reference(deposit_id), postings)


def net_by_asset(postings: Iterable[Posting]) -> dict[str, int]:
    """Sum of the postings per asset (all zeros for a balanced set)."""
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.asset] += posting.amount
    return dict(totals)


def assert_balanced(postings: Sequence[Posting]) -> None:
    """Raise UnbalancedEntry unless every asset nets to zero and no posting is zero."""
    if not postings:
        raise UnbalancedEntry("an entry needs at least one posting")
    if any(p.amount == 0 for p in postings):
        raise UnbalancedEntry("an entry has a zero posting")
    off = {asset: total for asset, total in net_by_asset(postings).items() if total != 0}
    if off:
        raise UnbalancedEntry(f"entry does not balance: {off}")


def balance_deltas(entries: Iterable[Entry]) -> list[tuple[str, str, int]]:
    """Net change per (account, asset) over `entries`, non-zero only, sorted by (account, asset).

    Applying balance updates in this order makes concurrent writers take row
    locks in the same order, so they cannot deadlock.
    """
    deltas: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        for posting in entry.postings:
            deltas[(posting.account_id, posting.asset)] += posting.amount
    return [(account, asset, delta) for (account, asset), delta in sorted(deltas.items()) if delta]


class PairTotal(NamedTuple):
    """What a set of entries posts to one (account, asset): the net change, the sum of its debits
    (negative postings, <= 0) and the sum of its credits (positive postings, >= 0)."""

    net: int
    debits: int
    credits: int


def pair_totals(entries: Iterable[Entry]) -> dict[tuple[str, str], PairTotal]:
    """(account, asset) -> PairTotal over every posting of `entries` (one pass)."""
    sums: dict[tuple[str, str], list[int]] = {}  # [debits, credits]
    for entry in entries:
        for account, asset, amount in entry.postings:
            pair = sums.get((account, asset))
            if pair is None:
                sums[(account, asset)] = pair = [0, 0]
            pair[amount > 0] += amount
    return {
        key: _tuple(PairTotal, (debits + credits, debits, credits)) for key, (debits, credits) in sums.items()
    }


def deltas_of(
    totals: Mapping[tuple[str, str], PairTotal], pairs: Iterable[tuple[str, str]] | None = None
) -> list[tuple[str, str, int]]:
    """balance_deltas from pair totals: the non-zero net changes, sorted by (account, asset).

    `pairs`: the keys of `totals` sorted already (the order balance rows are locked in).
    """
    return [
        (account, asset, net)
        for account, asset in (sorted(totals) if pairs is None else pairs)
        if (net := totals[(account, asset)].net)
    ]
