"""Which trades the ledger posts and which it parks: the pure rules, no I/O.

A trade the ledger cannot post is parked instead of refusing its whole batch (which would stall
every account's postings, since the sender retries the same batch forever):

- NEGATIVE_BALANCE: posting it would take a customer balance below zero;
- BALANCE_TOO_LARGE: posting it would take a balance past 2^63-1 minor units;
- UNKNOWN_ACCOUNT / UNKNOWN_ASSET: it names an account or asset the ledger does not have.

These depend on the ledger's state, not on the trade's form: fixing the state (a deposit, a
created account) makes the trade postable, so it waits for an operator's retry. A malformed
trade (INVALID_TRADE) or a broken stream (sequences, source) is still refused: that is a bug in
the sender, and no retry can post it.

A trade parked for one of these reasons halts its accounts: their later trades are parked behind
it (ACCOUNT_HALTED), in order, because posting a later trade first would change the balance the
parked one needs. A trade parked behind a halted account does not halt its other account (the
counterparty): that would spread a halt from one account to everyone who ever traded with it and
stall the ledger again. The counterparty's later trades post; the waiting trade is judged on its
balance then, when the halted account's trade is retried, and if it cannot be posted at that
point it halts its accounts in turn. Trades of other accounts post as usual. Trades are judged
one by one in their order, each against the balances the earlier ones leave.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backbone.reasons import RejectReason
from settlement import ledger
from settlement.ledger import Entry

Balances = dict[tuple[str, str], int]


@dataclass(frozen=True)
class Halt:
    """Why an account is halted: the parked trade (by reference) it waits behind, and its reason."""

    reference: str
    reason: RejectReason


@dataclass(frozen=True)
class Verdict:
    """Whether a trade posts; when it does not, why (a parking reason and a sentence)."""

    reason: RejectReason | None = None
    detail: str = ""

    @property
    def posts(self) -> bool:
        return self.reason is None


POSTS = Verdict()


def halted_accounts(entry: Entry) -> tuple[str, ...]:
    """The accounts a parked trade halts: its customer accounts (buyer and seller), sorted."""
    return tuple(sorted({p.account_id for p in entry.postings if p.account_id not in ledger.SYSTEM_ACCOUNTS}))


def entry_pairs(entries: Iterable[Entry]) -> list[tuple[str, str]]:
    """Every (account, asset) the entries post to, sorted (the order balance rows are locked in)."""
    return sorted({(p.account_id, p.asset) for e in entries for p in e.postings})


def judge(
    entry: Entry,
    balances: Mapping[tuple[str, str], int],
    *,
    missing_accounts: Collection[str] = (),
    missing_assets: Collection[str] = (),
) -> Verdict:
    """Whether `entry` can be posted on `balances` (missing rows count as zero); not halts."""
    accounts = sorted({p.account_id for p in entry.postings if p.account_id in missing_accounts})
    if accounts:
        return Verdict(
            RejectReason.UNKNOWN_ACCOUNT,
            f"the ledger has no account {', '.join(accounts)}; CreateAccount first",
        )
    assets = sorted({p.asset for p in entry.postings if p.asset in missing_assets})
    if assets:
        return Verdict(
            RejectReason.UNKNOWN_ASSET, f"the ledger has no asset {', '.join(assets)}; CreateAsset first"
        )
    deltas: dict[tuple[str, str], int] = defaultdict(int)
    for posting in entry.postings:
        deltas[(posting.account_id, posting.asset)] += posting.amount
    for (account, asset), delta in sorted(deltas.items()):
        before = balances.get((account, asset), 0)
        after = before + delta
        if after < 0 and account not in ledger.NEGATIVE_ALLOWED:
            return Verdict(
                RejectReason.NEGATIVE_BALANCE,
                f"{account}'s {asset} balance would go from {before} to {after} minor units "
                f"(the trade takes {-delta}); fund the account, then retry the trade",
            )
        if after > ledger.INT64_MAX:
            return Verdict(
                RejectReason.BALANCE_TOO_LARGE,
                f"{account}'s {asset} balance would go past 2^63-1 minor units (a wrong amount?)",
            )
    return POSTS


def apply(entry: Entry, balances: Balances) -> None:
    """Add `entry`'s postings to `balances`."""
    for posting in entry.postings:
        key = (posting.account_id, posting.asset)
        balances[key] = balances.get(key, 0) + posting.amount


def behind(halts: Mapping[str, Halt], accounts: Iterable[str]) -> Verdict:
    """ACCOUNT_HALTED when one of `accounts` is halted (naming the trade it waits behind), else POSTS."""
    waiting = [(account, halts[account]) for account in accounts if account in halts]
    if not waiting:
        return POSTS
    account, halt = waiting[0]
    return Verdict(
        RejectReason.ACCOUNT_HALTED,
        f"{account} is halted: this trade waits behind {halt.reference} (parked for {halt.reason}); "
        f"retry that one first",
    )


def all_post(
    totals: Mapping[tuple[str, str], ledger.PairTotal], balances: Mapping[tuple[str, str], int]
) -> bool:
    """Whether entries with these pair totals all post on `balances`, in any order and any subset.

    Whatever the order, a balance on the way is its starting value plus some of its postings: at
    least start + debits, at most start + credits. When neither bound leaves the limits judge
    checks (below zero for an account that may not go there, past 2^63-1), no entry can fail.
    """
    for pair, total in totals.items():
        before = balances.get(pair, 0)
        if before + total.debits < 0 and pair[0] not in ledger.NEGATIVE_ALLOWED:
            return False
        if before + total.credits > ledger.INT64_MAX:
            return False
    return True


@dataclass
class BatchPlan:
    """What to do with each trade of a batch: post (in order) or park (with a verdict)."""

    verdicts: list[Verdict]
    # Accounts halted by this batch (not before it), each by the first trade of it parked here.
    new_halts: dict[str, Halt] = field(default_factory=dict)


def plan_batch(
    entries: Sequence[Entry],
    balances: Balances,
    halts: Mapping[str, Halt],
    *,
    missing_accounts: Collection[str] = (),
    missing_assets: Collection[str] = (),
    totals: Mapping[tuple[str, str], ledger.PairTotal] | None = None,
) -> BatchPlan:
    """Judge `entries` in order; `balances` is updated with the ones that post.

    A trade of a halted account (halted before the batch, or by an earlier trade of it) is
    parked behind it; otherwise it is judged on the balances the earlier trades leave, and
    one that cannot be posted is parked and halts its accounts.

    `totals` (ledger.pair_totals of `entries`, when the caller has them) allows a shortcut with the
    same verdicts: when no account is halted, nothing is unknown and every balance stays within
    its limits even if all its debits (or all its credits) came first, every trade posts.
    """
    nothing_in_the_way = not halts and not missing_accounts and not missing_assets
    if totals is not None and nothing_in_the_way and all_post(totals, balances):
        for pair, total in totals.items():
            balances[pair] = balances.get(pair, 0) + total.net
        return BatchPlan([POSTS] * len(entries))
    current = dict(halts)
    plan = BatchPlan([])
    for entry in entries:
        accounts = halted_accounts(entry)
        verdict = behind(current, accounts)
        if verdict.posts:
            verdict = judge(entry, balances, missing_accounts=missing_accounts, missing_assets=missing_assets)
            if verdict.posts:
                apply(entry, balances)
            else:
                assert verdict.reason is not None
                for account in accounts:
                    current[account] = plan.new_halts[account] = Halt(entry.reference, verdict.reason)
        plan.verdicts.append(verdict)
    return plan


@dataclass(frozen=True)
class Parked:
    """An unresolved parked trade, as a retry sees it."""

    reference: str
    entry: Entry
    reason: RejectReason
    detail: str

    @property
    def accounts(self) -> tuple[str, ...]:
        return halted_accounts(self.entry)

    @property
    def waits(self) -> bool:
        """Parked behind a halted account (rather than for a cause of its own)."""
        return self.reason == RejectReason.ACCOUNT_HALTED


class RetryRefused(Exception):
    """The named trade cannot be posted (yet): nothing changes."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        assert verdict.reason is not None
        self.reason = verdict.reason
        self.detail = verdict.detail


@dataclass
class RetryPlan:
    """What a retry does: the trades it posts (in order), the reasons it renews, the halts after it."""

    posted: list[str] = field(default_factory=list)
    # reference -> its new verdict: a trade that waited behind a halted account and, tried now,
    # cannot be posted itself (its own reason replaces ACCOUNT_HALTED, and it halts its accounts).
    renewed: dict[str, Verdict] = field(default_factory=dict)
    halts: dict[str, Halt] = field(default_factory=dict)


def halts_of(parked: Iterable[Parked]) -> dict[str, Halt]:
    """Each account's halt: the first parked trade of it parked for a cause of its own."""
    halts: dict[str, Halt] = {}
    for trade in parked:
        if not trade.waits:
            for account in trade.accounts:
                halts.setdefault(account, Halt(trade.reference, trade.reason))
    return halts


def plan_retry(
    parked: Sequence[Parked],
    target: str,
    balances: Balances,
    *,
    missing_accounts: Collection[str] = (),
    missing_assets: Collection[str] = (),
) -> RetryPlan:
    """Retry parked trade `target`: post it, then the trades that waited behind its accounts, in order.

    `parked` is every unresolved parked trade in the order they were parked. A target that
    waits behind a halted account is refused (RetryRefused, ACCOUNT_HALTED, naming the trade to
    retry first); one that cannot be posted yet is refused with its reason. Once it posts, the
    halts are worked out again from the trades still parked, in order: a trade that waited and
    whose accounts are no longer halted is judged now and posts, or, when it cannot, keeps its
    place with its own reason and halts its accounts in turn. `balances` is updated with what
    posts.
    """
    by_reference = {trade.reference: trade for trade in parked}
    chosen = by_reference[target]
    waiting = behind(halts_of(t for t in parked if t.reference != target), chosen.accounts)
    if chosen.waits and not waiting.posts:
        raise RetryRefused(waiting)
    verdict = judge(chosen.entry, balances, missing_accounts=missing_accounts, missing_assets=missing_assets)
    if not verdict.posts:
        raise RetryRefused(verdict)
    apply(chosen.entry, balances)
    plan = RetryPlan(posted=[target])
    for trade in parked:
        if trade.reference == target:
            continue
        if not trade.waits:
            for account in trade.accounts:
                plan.halts.setdefault(account, Halt(trade.reference, trade.reason))
            continue
        if not behind(plan.halts, trade.accounts).posts:
            continue  # still behind a halted account
        verdict = judge(
            trade.entry, balances, missing_accounts=missing_accounts, missing_assets=missing_assets
        )
        if verdict.posts:
            apply(trade.entry, balances)
            plan.posted.append(trade.reference)
            continue
        assert verdict.reason is not None
        plan.renewed[trade.reference] = verdict
        for account in trade.accounts:
            plan.halts.setdefault(account, Halt(trade.reference, verdict.reason))
    return plan
