"""StreamExecutions' reports of one account: live, or resumed from a report number and then live.

Live only (``from_sequence`` 0): the account's reports from the fan-out (gateway/fanout.py), from
the moment the subscription is registered.

Resumed (``from_sequence`` N > 0): the account's reports numbered N, N+1, ... (their
``account_sequence``), every one once, then live, without a gap or a duplicate:

1. Subscribe to the live reports first; they queue while the past is read.
2. Read the past from trading's report history (ListExecutions, a page at a time, so memory holds
   one page and the subscription's bounded queue), up to the account's last report when each page
   was asked. Trading answers a page only once its history holds every report journaled when it
   was asked, so nothing journaled before the subscription was registered is missing: a report
   the subscription did not get was published (so journaled) before it was registered.
3. Go live: drop a queued report the history already gave (its number is below the next wanted);
   should a live report skip numbers, read the skipped ones from the history first.

A subscription whose queue overflows while the past is read (or whose feed broke) is replaced by
a new one and the history read again up to the new end, so a long catch-up stays bounded.
Numbers count per trading shard; a system has one shard today, to which from_sequence applies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from backbone.common.v1 import common_pb2
from backbone.runtime.errors import ServiceError
from backbone.trading.v1 import trading_pb2
from gateway.backends import Backends
from gateway.fanout import FEED_WAIT_SECONDS, Subscription

log = structlog.get_logger("backbone.gateway")

# The initial metadata key of the account's last report number when the subscription was
# registered (AccountExecutions.start).
LAST_SEQUENCE_HEADER = "backbone-account-sequence"
# Reports read from the history in one ListExecutions call.
HISTORY_PAGE = 500


class AccountExecutions:
    """One StreamExecutions call's reports (common.v1.ExecutionReport, as trading made them)."""

    def __init__(self, backends: Backends, account_id: str, from_sequence: int) -> None:
        self._backends = backends
        self._account_id = account_id
        # The number of the next report to send (0: live only, numbers not followed).
        self._next = from_sequence
        # The account's last report number as the history last said (resuming only).
        self._last_known = 0
        self._gone = False
        self.subscription: Subscription = backends.fanout.subscribe(account_id)

    def end(self) -> None:
        """The caller went away: stop quietly."""
        self._gone = True
        self.subscription.end()

    async def start(self) -> tuple[list[common_pb2.ExecutionReport], int | None]:
        """Wait (bounded) for the feed; when resuming, read the first page of the past (raising
        OUT_OF_RANGE, SEQUENCE_BEYOND_END, for a from_sequence beyond the account's last report
        + 1). Returns that page and the account's last report number once the subscription was
        registered (every later report follows it: a client resumes from it + 1 if the stream
        breaks before its first report; None when trading did not say, live only)."""
        await self._backends.fanout.wait_connected(FEED_WAIT_SECONDS)
        if self._next:
            page = await self._page(self._next, 0)
            self._last_known = page.last_account_sequence
            return list(page.reports), page.last_account_sequence
        backends = self._backends
        request = trading_pb2.ListExecutionsRequest(account_id=self._account_id, last_only=True)
        try:
            answer = await backends.call(backends.trading.ListExecutions, request)
        except ServiceError as error:  # live only works without it, as before resumes existed
            log.warning("the account's last report number is unknown", why=str(error))
            return [], None
        return [], int(answer.last_account_sequence)

    async def reports(
        self, first: list[common_pb2.ExecutionReport]
    ) -> AsyncIterator[common_pb2.ExecutionReport]:
        """`first` (start()'s), the rest of the past, then the live reports; ends when the caller
        went away, raises what ended the subscription."""
        if self._next:
            for report in first:
                self._next = report.account_sequence + 1
                yield report
            async for report in self._past():
                yield report
        while not self._gone:
            live = await self.subscription.get()
            if live is None:
                return
            number = live.account_sequence
            if self._next and number:
                if number < self._next:
                    continue  # the history gave it
                if number > self._next:
                    async for missed in self._history_through(number - 1):
                        yield missed
                self._next = number + 1
            yield live

    async def _past(self) -> AsyncIterator[common_pb2.ExecutionReport]:
        """The reports from the next wanted up to the account's last one, page by page; a
        subscription that failed meanwhile is replaced and the history read again to its end."""
        while not self._gone:
            if self._next <= self._last_known:
                async for report in self._history_through(self._last_known):
                    yield report
            if not self.subscription.failed:
                return
            self.subscription.close()
            self.subscription = self._backends.fanout.subscribe(self._account_id)
            await self._backends.fanout.wait_connected(FEED_WAIT_SECONDS)
            self._last_known = (await self._page(self._next, self._next)).last_account_sequence

    async def _history_through(self, through: int) -> AsyncIterator[common_pb2.ExecutionReport]:
        """The history's reports from the next wanted through `through`, a page at a time."""
        while self._next <= through and not self._gone:
            page = await self._page(self._next, through)
            if not page.reports:
                return  # nothing more there (cannot happen for journaled numbers)
            for report in page.reports:
                self._next = report.account_sequence + 1
                yield report

    async def _page(self, from_sequence: int, through_sequence: int) -> trading_pb2.ListExecutionsResponse:
        backends = self._backends
        request = trading_pb2.ListExecutionsRequest(
            account_id=self._account_id,
            from_sequence=from_sequence,
            through_sequence=through_sequence,
            limit=HISTORY_PAGE,
        )
        page: trading_pb2.ListExecutionsResponse = await backends.call(
            backends.trading.ListExecutions, request
        )
        return page
