"""StreamExecutions' reports of one account: live, or resumed from report numbers and then live.

A StreamOrders session reads its account's reports through the same class, live only
(gateway/order_stream.py), so both ride through a trading feed break the same way.

Report numbers (``account_sequence``) count per trading shard: each shard numbers the account's
reports it journals 1, 2, 3... A stream resumes each shard named in its request (its
``from_sequence`` for the default shard, ``from_shard_sequences`` for any) and takes every other
shard's reports live only.

Live only (no shard resumed): the account's reports from the fan-out (gateway/fanout.py), from
the moment the subscription is registered.

Resumed shard S from number N: the account's reports of S numbered N, N+1, ..., every one once,
then live, without a gap or a duplicate:

1. Subscribe to the live reports first; they queue while the past is read.
2. Read the past from S's report history (ListExecutions, a page at a time, so memory holds
   one page and the subscription's bounded queue), up to the account's last report of S when
   each page was asked. Trading answers a page only once its history holds every report
   journaled when it was asked, so nothing journaled before the subscription was registered is
   missing: a report the subscription did not get was published (so journaled) before it was
   registered.
3. Go live: drop a queued report of S the history already gave (its number is below the next
   wanted of S); should a live report of S skip numbers, read the skipped ones from S's history
   first.

A subscription whose queue overflows while the past is read is replaced by a new one and every
resumed shard's history read again up to its new end, so a long catch-up stays bounded.

A shard whose feed breaks (trading restarted, say) does not end the stream: once the feed is back,
the fan-out's FeedResumed marker comes before any report of the new feed, and the reports of that
shard the stream did not get are read from its history (from the next one wanted of a resumed
shard; for a live-only one, from the one after the last it sent, or after the account's last
number when the subscription was registered), then the new feed's reports follow, those the
history gave dropped. Only a shard whose position the stream never learned (it was down when the
stream started and sent nothing since) ends the stream with UNAVAILABLE (EXECUTIONS_INTERRUPTED):
the client resumes from what it has. A history read once the stream is under way that trading
cannot answer for now (UNAVAILABLE: HISTORY_BEHIND while its history catches up with its journal
after a restart, or the shard restarting again; DEADLINE_EXCEEDED) is sent again, with backoff,
for up to HISTORY_PATIENCE_SECONDS (the live reports queue meanwhile, bounded); then its refusal
ends the stream. The first pages read before the headers are not: their refusal answers the call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping, Sequence

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.ids import shard_of_order_id
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.runtime.reconnect import Backoff
from backbone.trading.v1 import trading_pb2
from gateway.backends import Backends
from gateway.fanout import FEED_WAIT_SECONDS, FeedResumed, ResumingSubscription

log = structlog.get_logger("backbone.gateway")

# The initial metadata keys of the account's last report numbers when the subscription was
# registered (AccountExecutions.start): the default shard's alone, and every shard's as
# "shard=N,shard=N".
LAST_SEQUENCE_HEADER = "backbone-account-sequence"
LAST_SEQUENCES_HEADER = "backbone-account-sequences"
# Reports read from the history in one ListExecutions call.
HISTORY_PAGE = 500
# How long a history read once the stream is under way (a catch-up after a feed break, say) is
# sent again while trading cannot answer it for now (its history behind its journal after a
# restart, the shard restarting again), before the stream ends with the refusal; and the waits.
HISTORY_PATIENCE_SECONDS = 20.0
_HISTORY_BACKOFF = Backoff(initial_seconds=0.1, max_seconds=2.0)
# The refusals a later read may get past.
_PASSING = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class AccountExecutions:
    """One stream's reports of one account (common.v1.ExecutionReport, as trading made them): a
    StreamExecutions call's, or a StreamOrders session's (live only; it keeps those of its orders)."""

    def __init__(
        self,
        backends: Backends,
        account_id: str,
        resume: Mapping[str, int],
        *,
        max_queued: int | None = None,
    ) -> None:
        """`resume`: shard name -> the number of the first report wanted from it (names of
        backends.trading_shards, checked by the caller; a shard not in it is live only);
        `max_queued`: the live reports the subscription queues at most (else the fan-out's bound)."""
        self._backends = backends
        self._max_queued = max_queued
        self._account_id = account_id
        shards = backends.trading_shards
        self._default = shards.default.name
        self._stubs = {shard.name: shard.stub for shard in shards.all}
        # Per resumed shard: the number of the next report to send.
        self._next = {name: number for name, number in resume.items() if number > 0}
        # Per resumed shard: the account's last report number as its history last said, and the
        # first page start() read.
        self._last_known: dict[str, int] = {}
        self._first: dict[str, list[common_pb2.ExecutionReport]] = {}
        # Per live-only shard: the number after the last report sent, or after the account's last
        # when the subscription was registered (where a catch-up after a feed break starts).
        self._after_sent: dict[str, int] = {}
        self._gone = False
        self.subscription: ResumingSubscription = backends.fanout.subscribe_resuming(
            account_id, max_queued=max_queued
        )

    def shard_of(self, report: common_pb2.ExecutionReport) -> str:
        """The shard that journaled `report` (its order id names it; a bare id is the default's)."""
        return shard_of_order_id(report.order.order_id) or self._default

    def end(self) -> None:
        """The caller went away: stop quietly."""
        self._gone = True
        self.subscription.end()

    async def start(self) -> dict[str, int]:
        """Wait (bounded) for the feed; read the first page of each resumed shard's past (raising
        OUT_OF_RANGE, SEQUENCE_BEYOND_END, for a number beyond the account's last report of the
        shard + 1). Returns the account's last report number of each shard once the subscription
        was registered (every later report of a shard follows it: a client resumes from it + 1 if
        the stream breaks before that shard's first report); a shard that did not say is left out
        (its reports still come live)."""
        await self._backends.fanout.wait_connected(FEED_WAIT_SECONDS)
        # The live-only shards asked at once: one that is down costs its reach wait, not one each.
        live_only = [name for name in self._stubs if name not in self._next]
        known = dict(zip(live_only, await asyncio.gather(*map(self._last_number, live_only)), strict=True))
        lasts: dict[str, int] = {}
        for name in self._stubs:
            if name in self._next:
                page = await self._page(name, self._next[name], 0, patient=False)  # the caller retries
                self._last_known[name] = lasts[name] = int(page.last_account_sequence)
                self._first[name] = list(page.reports)
                continue
            last = known[name]
            if last is not None:
                lasts[name] = last
                self._after_sent[name] = last + 1
        return lasts

    async def _last_number(self, name: str) -> int | None:
        """The account's last report number of shard `name` (None: it did not answer)."""
        request = trading_pb2.ListExecutionsRequest(account_id=self._account_id, last_only=True)
        try:
            answer = await self._backends.call(self._stubs[name].ListExecutions, request)
        except ServiceError as error:  # live only works without it, as before resumes existed
            log.warning("the account's last report number is unknown", shard=name, why=str(error))
            return None
        return int(answer.last_account_sequence)

    async def reports(self) -> AsyncIterator[common_pb2.ExecutionReport]:
        """The reports of batches(), one at a time."""
        async for batch in self.batches():
            for report in batch:
                yield report

    async def batches(self) -> AsyncIterator[Sequence[common_pb2.ExecutionReport]]:
        """Each resumed shard's first page (start()'s) and the rest of its past, then the live
        reports, in order, a batch at a time (a page of a history, or the live reports queued at
        one wake-up); ends when the caller went away, raises what ended the subscription."""
        for name, first in self._first.items():
            if first:
                self._next[name] = first[-1].account_sequence + 1
                yield first
        self._first.clear()
        async for page in self._past():
            yield page
        while not self._gone:
            queued = await self.subscription.get_all()
            if queued is None:
                return
            batch: list[common_pb2.ExecutionReport] = []
            for live in queued:
                if isinstance(live, FeedResumed):
                    if batch:
                        yield batch
                        batch = []
                    async for page in self._catch_up(live.shard):
                        yield page
                    continue
                number = live.account_sequence
                name = self.shard_of(live)
                wanted = self._next.get(name, 0)
                if wanted and number:
                    if number < wanted:
                        continue  # the history gave it
                    if number > wanted:
                        if batch:
                            yield batch
                            batch = []
                        async for page in self._history_through(name, number - 1):
                            yield page
                    self._next[name] = number + 1
                elif number:
                    self._after_sent[name] = number + 1
                batch.append(live)
            if batch:
                yield batch

    async def _catch_up(self, name: str) -> AsyncIterator[Sequence[common_pb2.ExecutionReport]]:
        """Shard `name`'s feed is back after a break: its reports this stream did not get, from its
        history up to the account's last one now, a page at a time; from then on the shard counts
        as resumed (its live reports the history gave are dropped, a skipped number is fetched)."""
        if name not in self._stubs:
            return  # not a shard of this gateway's (cannot happen: the fan-out reads these)
        start = self._next.get(name) or self._after_sent.get(name, 0)
        if not start:
            raise ServiceError(
                grpc.StatusCode.UNAVAILABLE,
                RejectReason.EXECUTIONS_INTERRUPTED,
                f"the execution report feed of trading shard {name!r} was interrupted before this "
                "stream learned its report numbers; resume from the last report you have",
            )
        self._next[name] = start
        page = await self._page(name, start, 0)
        if page.reports:
            self._next[name] = page.reports[-1].account_sequence + 1
            yield page.reports
        async for reports in self._history_through(name, int(page.last_account_sequence)):
            yield reports

    async def _past(self) -> AsyncIterator[Sequence[common_pb2.ExecutionReport]]:
        """Each resumed shard's reports from the next wanted up to the account's last one, page by
        page; a subscription that failed meanwhile is replaced and the histories read again to
        their ends (the live-only shards' too, from the number after the account's last when the
        stream started: their live reports queued in the failed subscription were never read)."""
        while not self._gone and self._next:
            for name in list(self._next):
                if self._next[name] <= self._last_known.get(name, 0):
                    async for reports in self._history_through(name, self._last_known[name]):
                        yield reports
            if not self.subscription.failed:
                return
            self.subscription.close()
            self.subscription = self._backends.fanout.subscribe_resuming(
                self._account_id, max_queued=self._max_queued
            )
            for name, after_sent in self._after_sent.items():
                self._next.setdefault(name, after_sent)
            await self._backends.fanout.wait_connected(FEED_WAIT_SECONDS)
            for name, wanted in self._next.items():
                self._last_known[name] = (await self._page(name, wanted, wanted)).last_account_sequence

    async def _history_through(
        self, name: str, through: int
    ) -> AsyncIterator[Sequence[common_pb2.ExecutionReport]]:
        """Shard `name`'s history from its next wanted through `through`, a page at a time."""
        while self._next[name] <= through and not self._gone:
            page = await self._page(name, self._next[name], through)
            if not page.reports:
                return  # nothing more there (cannot happen for journaled numbers)
            self._next[name] = page.reports[-1].account_sequence + 1
            yield page.reports

    async def _page(
        self, name: str, from_sequence: int, through_sequence: int, *, patient: bool = True
    ) -> trading_pb2.ListExecutionsResponse:
        """A page of shard `name`'s history. `patient` (every read once the stream is under way): a
        read trading cannot answer for now (UNAVAILABLE: its history behind its journal, the shard
        restarting again; DEADLINE_EXCEEDED) is sent again, with backoff, for up to
        HISTORY_PATIENCE_SECONDS, before its refusal is raised."""
        request = trading_pb2.ListExecutionsRequest(
            account_id=self._account_id,
            from_sequence=from_sequence,
            through_sequence=through_sequence,
            limit=HISTORY_PAGE,
        )
        clock = asyncio.get_running_loop().time
        give_up, failures = clock() + HISTORY_PATIENCE_SECONDS, 0
        while True:
            try:
                page: trading_pb2.ListExecutionsResponse = await self._backends.call(
                    self._stubs[name].ListExecutions, request
                )
                return page
            except ServiceError as error:
                if not patient or self._gone or error.code not in _PASSING or clock() >= give_up:
                    raise
                failures += 1
                log.info("report history not readable yet, reading again", shard=name, why=str(error))
                await asyncio.sleep(_HISTORY_BACKOFF.delay(failures, random.random()))
