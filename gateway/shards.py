"""The trading shards as the gateway sees them, and which one each symbol and each order goes to.

Trading is split by symbol: each shard (one trading process, its own journal, lease and outboxes)
owns a set of symbols (its BACKBONE_TRADING_SYMBOLS; none listed: every symbol). The gateway is
given every shard's name and address (BACKBONE_TRADING_SHARDS, the first being the default shard)
and learns what each one owns from the shard itself, never from a second copy of the map:

- a symbol that has an instrument goes to the shard that listed the instrument (ListInstruments of
  every shard, merged: an instrument is only ever created on its owner);
- a symbol being created (AdminService CreateInstrument) goes to the one shard whose GetShardInfo
  says it owns it. None owning it, or more than one claiming it (two shards listing it, or a shard
  owning every symbol beside another shard) is refused: FAILED_PRECONDITION, NO_SHARD_FOR_SYMBOL;
- an order id names its shard (``<shard>.<hex>``, backbone/ids.py); an id of another form (made
  before sharding) goes to the default shard, and one naming a shard the gateway does not know is
  an order nobody has (NOT_FOUND, UNKNOWN_ORDER).

A shard that cannot be reached keeps its last answers (its instruments stay routable, its orders
are answered TRADING_UNAVAILABLE by the callers), so one shard down never stops the others; one
that has never answered makes a symbol the gateway does not know UNAVAILABLE rather than unknown
(gateway/instruments.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from backbone.common.v1 import common_pb2
from backbone.ids import shard_of_order_id
from backbone.reasons import RejectReason
from backbone.runtime.batching import BatchingStream
from backbone.runtime.context import outgoing_metadata
from backbone.runtime.errors import ServiceError, failed_precondition, invalid_field, not_found, unavailable
from backbone.trading.v1 import trading_pb2, trading_pb2_grpc

if TYPE_CHECKING:
    from gateway.client_order_ids import ClientOrderIdCheck

log = structlog.get_logger("backbone.gateway")

OrderStream = BatchingStream[trading_pb2.OrderCommand, trading_pb2.CommandResult]
# A unary call to one shard (its deadline, request id and failures as gateway/backends.py makes them).
CallShard = Callable[["TradingShard", Callable[..., Awaitable[Any]], Any], Awaitable[Any]]
# Whether a shard's channel is down and does not come back soon (gateway/backends.py unreachable).
Unreachable = Callable[[grpc.aio.Channel | None], Awaitable[bool]]
# The states of a channel that is down now: in reconnect backoff, or closed.
_DOWN_STATES = frozenset({grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN})


@dataclass
class TradingShard:
    """One trading shard: its stub, channel and batched order stream, and what it told the gateway."""

    name: str
    address: str
    stub: trading_pb2_grpc.TradingServiceStub
    orders: OrderStream
    channel: grpc.aio.Channel | None = None
    # The symbols it owns as GetShardInfo said (empty: every symbol); None until it answered once.
    symbols: frozenset[str] | None = None
    # Its instruments as it last listed them.
    instruments: list[common_pb2.Instrument] = field(default_factory=list)

    def subscribe_executions(self) -> Any:
        """Its SubscribeExecutions stream (a grpc.aio.UnaryStreamCall), for the reports' fan-out."""
        return self.stub.SubscribeExecutions(
            trading_pb2.SubscribeExecutionsRequest(), metadata=outgoing_metadata()
        )

    def stream_market_data(self) -> Any:
        """Its StreamMarketData stream (a grpc.aio.UnaryStreamCall), for the market data fan-out."""
        return self.stub.StreamMarketData(trading_pb2.StreamMarketDataRequest(), metadata=outgoing_metadata())

    def owns(self, symbol: str) -> bool:
        """Whether the shard said it owns `symbol` (False while it has not answered)."""
        return self.symbols is not None and (not self.symbols or symbol in self.symbols)


class TradingShards:
    """Every trading shard, the default one first; routes symbols, order ids and commands."""

    def __init__(
        self,
        shards: Sequence[TradingShard],
        call: CallShard,
        unreachable: Unreachable,
        client_order_ids: ClientOrderIdCheck | None = None,
    ) -> None:
        if not shards:
            raise ValueError("at least one trading shard")
        self.all: tuple[TradingShard, ...] = tuple(shards)
        self._by_name = {shard.name: shard for shard in shards}
        self._call = call
        self._unreachable = unreachable
        # With several shards: a new order's client order id is looked up on the other shards
        # while the claims in Redis may be incomplete (gateway/client_order_ids.py).
        self._client_order_ids = client_order_ids if len(self.all) > 1 else None
        # symbol -> the shard whose ListInstruments has it.
        self._instrument_owner: dict[str, TradingShard] = {}
        # The shards that have answered ListInstruments at least once.
        self._listed: set[str] = set()

    @property
    def default(self) -> TradingShard:
        """The shard of order ids made before sharding (the first of BACKBONE_TRADING_SHARDS)."""
        return self.all[0]

    @property
    def sharded(self) -> bool:
        return len(self.all) > 1

    def named(self, name: str) -> TradingShard:
        """The shard called `name`; NOT_FOUND (UNKNOWN_SHARD) when there is none."""
        shard = self._by_name.get(name)
        if shard is None:
            known = ", ".join(self._by_name)
            raise not_found(
                RejectReason.UNKNOWN_SHARD, f"there is no trading shard {name[:64]!r} (there are {known})"
            )
        return shard

    # --- symbols ------------------------------------------------------------------------------

    def of_symbol(self, symbol: str) -> TradingShard:
        """The shard that trades `symbol`: the one that listed its instrument, else the one that said
        it owns it, else the default shard (which refuses an instrument it does not have)."""
        shard = self._instrument_owner.get(symbol)
        if shard is not None:
            return shard
        owners = [shard for shard in self.all if shard.owns(symbol)]
        return owners[0] if len(owners) == 1 else self.default

    def learned_instrument(self, shard: TradingShard, instrument: common_pb2.Instrument) -> None:
        """Remember an instrument `shard` just created."""
        self._instrument_owner[instrument.symbol] = shard

    async def list_instruments(self) -> list[common_pb2.Instrument]:
        """Every shard's instruments, merged by symbol; a shard that cannot answer counts with what
        it listed last (raises its error only when no shard answered)."""
        answers = await asyncio.gather(
            *(
                self._call(shard, shard.stub.ListInstruments, trading_pb2.ListInstrumentsRequest())
                for shard in self.all
            ),
            return_exceptions=True,
        )
        failures = [answer for answer in answers if isinstance(answer, BaseException)]
        if len(failures) == len(self.all):
            raise failures[0]
        owner: dict[str, TradingShard] = {}
        for shard, answer in zip(self.all, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("trading shard did not list its instruments", shard=shard.name, error=str(answer))
            else:
                shard.instruments = list(answer.instruments)
                self._listed.add(shard.name)
            for instrument in shard.instruments:
                owner.setdefault(instrument.symbol, shard)
        self._instrument_owner = owner
        return sorted(
            (instrument for shard in self.all for instrument in shard.instruments), key=lambda i: i.symbol
        )

    def unlisted(self) -> list[str]:
        """The shards that have never listed their instruments to this gateway (unreachable since)."""
        return [shard.name for shard in self.all if shard.name not in self._listed]

    async def learn(self, shard: TradingShard, *, again: bool = False) -> frozenset[str]:
        """What `shard` owns (GetShardInfo), asked once or `again`; a shard answering under another
        name than it was configured with is refused (FAILED_PRECONDITION, UNKNOWN_SHARD)."""
        if shard.symbols is None or again:
            info = await self._call(shard, shard.stub.GetShardInfo, trading_pb2.GetShardInfoRequest())
            if info.shard != shard.name:
                raise failed_precondition(
                    RejectReason.UNKNOWN_SHARD,
                    f"the trading process at {shard.address} is shard {info.shard!r}, but "
                    f"BACKBONE_TRADING_SHARDS calls it {shard.name!r}: fix the setting",
                )
            shard.symbols = frozenset(info.symbols)
        return shard.symbols

    async def owner_of_new_symbol(self, symbol: str) -> TradingShard:
        """The one shard that owns `symbol`, to create its instrument on; every shard is asked.

        FAILED_PRECONDITION (NO_SHARD_FOR_SYMBOL) when none owns it or more than one claims it;
        UNAVAILABLE (TRADING_UNAVAILABLE) when a shard that has not told yet cannot be reached.
        Without one owner among what the shards said before, they are asked again (a shard may
        have been restarted with the symbol added).
        """
        for shard in self.all:
            await self.learn(shard)
        owners = [shard.name for shard in self.all if shard.owns(symbol)]
        if len(owners) != 1:
            for shard in self.all:
                await self.learn(shard, again=True)
            owners = [shard.name for shard in self.all if shard.owns(symbol)]
        if len(owners) != 1:
            why = "no trading shard owns it" if not owners else f"shards {', '.join(owners)} all claim it"
            raise failed_precondition(
                RejectReason.NO_SHARD_FOR_SYMBOL,
                f"{symbol[:40]!r} cannot be created: {why}; list it in exactly one shard's "
                "BACKBONE_TRADING_SYMBOLS",
                symbol=symbol[:40],
            )
        return self._by_name[owners[0]]

    # --- orders -------------------------------------------------------------------------------

    def of_order(self, order_id: str) -> TradingShard:
        """The shard an order id names (the default shard for an id made before sharding);
        NOT_FOUND (UNKNOWN_ORDER) when it names a shard there is not."""
        name = shard_of_order_id(order_id)
        if name is None:
            return self.default
        shard = self._by_name.get(name)
        if shard is None:
            raise not_found(
                RejectReason.UNKNOWN_ORDER,
                f"there is no order {order_id[:80]!r} (it names trading shard {name!r}, which is not one of "
                f"{', '.join(self._by_name)})",
                order_id=order_id[:80],
            )
        return shard

    def of_command(self, command: trading_pb2.OrderCommand) -> TradingShard:
        """The shard a command goes to: a new order's (or a symbol's mass cancel's) by symbol, a
        cancel's or replace's by order id. A mass cancel of every symbol has no one shard: the
        caller sends it to each (gateway/mass_cancel.py)."""
        kind = command.WhichOneof("command")
        if kind == "new_order":
            return self.of_symbol(command.new_order.symbol)
        if kind == "cancel_order":
            return self.of_order(command.cancel_order.order_id)
        if kind == "replace_order":
            return self.of_order(command.replace_order.order_id)
        if kind == "mass_cancel" and command.mass_cancel.symbol:
            return self.of_symbol(command.mass_cancel.symbol)
        return self.default

    def down_now(self, symbol: str) -> TradingShard | None:
        """The shard of `symbol` when its channel is down at this moment (in reconnect backoff, or
        shut down), without waiting to see whether it comes back; else None (up, connecting, or no
        shard owns the symbol: placing the order says so)."""
        try:
            shard = self.of_symbol(symbol)
        except ServiceError:
            return None
        channel = shard.channel
        if channel is None or channel.get_state() not in _DOWN_STATES:
            return None
        return shard

    async def down(self, shards: Iterable[TradingShard]) -> set[str]:
        """The names of those of `shards` whose channel is down and does not come back soon."""
        unique = {shard.name: shard for shard in shards}
        verdicts = await asyncio.gather(*(self._unreachable(shard.channel) for shard in unique.values()))
        return {name for name, down in zip(unique, verdicts, strict=True) if down}

    async def submit_many(
        self, commands: Sequence[trading_pb2.OrderCommand]
    ) -> list[trading_pb2.CommandResult | ServiceError]:
        """Each command on its shard's batched stream (one message per shard), answered in order.

        With several shards, while the client order id claims may have been lost, new orders whose
        client order id another shard holds, or that a shard could not confirm, are answered
        without being sent (gateway/client_order_ids.py)."""
        groups: dict[str, list[int]] = {}
        answers: list[trading_pb2.CommandResult | ServiceError | None] = [None] * len(commands)
        for index, command in enumerate(commands):
            try:
                groups.setdefault(self.of_command(command).name, []).append(index)
            except ServiceError as error:
                answers[index] = error
        if self._client_order_ids is not None:
            held = await self._client_order_ids.held_elsewhere(self, commands, groups)
            for index, answer in held.items():
                answers[index] = answer
            if held:
                groups = {name: [i for i in indices if i not in held] for name, indices in groups.items()}
                groups = {name: indices for name, indices in groups.items() if indices}
        names = list(groups)
        results = await asyncio.gather(
            *(self._by_name[name].orders.submit_many([commands[i] for i in groups[name]]) for name in names)
        )
        for name, result in zip(names, results, strict=True):
            for index, answer in zip(groups[name], result, strict=True):
                answers[index] = answer
        return [answer if answer is not None else _lost() for answer in answers]

    async def find_client_orders(
        self, name: str, request: trading_pb2.FindClientOrdersRequest
    ) -> trading_pb2.FindClientOrdersResponse:
        """Shard `name`'s FindClientOrders (its deadline and failures as every unary call's)."""
        shard = self._by_name[name]
        answer: trading_pb2.FindClientOrdersResponse = await self._call(
            shard, shard.stub.FindClientOrders, request
        )
        return answer

    async def list_open_orders(
        self, request: trading_pb2.ListOpenOrdersRequest
    ) -> trading_pb2.ListOpenOrdersResponse:
        """A page of an account's open orders: of its symbol's shard, or of every shard merged.

        Every shard orders its page by (created_ns, order_id) after the same point, so the first
        `limit` of their pages merged in that order are the first `limit` of all, and there are more
        when any shard had more or the merge left some out. A shard that cannot answer fails the
        call (a page missing its orders would look complete).
        """
        targets = [self.of_symbol(request.symbol)] if request.symbol else list(self.all)
        pages = await asyncio.gather(
            *(self._call(shard, shard.stub.ListOpenOrders, request) for shard in targets)
        )
        if len(pages) == 1:
            page: trading_pb2.ListOpenOrdersResponse = pages[0]
            return page
        merged = sorted(
            (order for page in pages for order in page.orders), key=lambda o: (o.created_ns, o.order_id)
        )
        more = any(page.more for page in pages) or len(merged) > request.limit
        return trading_pb2.ListOpenOrdersResponse(orders=merged[: request.limit], more=more)

    async def list_fills(
        self, request: trading_pb2.ListFillsRequest, after_shard: str, min_sequence_of: Callable[[str], int]
    ) -> tuple[list[trading_pb2.Fill], str, bool, int]:
        """A page of an account's fills: (fills, the shard of the last one, more, the projected
        sequence of the symbol's shard, or of the default shard: 0 when this page did not ask it).

        A symbol's fills are on its shard. Each shard numbers its own trades, so a page of every
        symbol walks the shards in order (every fill of the first, then of the next), from the
        shard of the page token's last fill (`after_shard`; "" is the first). Each shard's read
        waits for `min_sequence_of(shard)`, the default shard's also for the request's
        min_sequence.
        """
        if request.symbol or not self.sharded:
            targets = [self.of_symbol(request.symbol) if request.symbol else self.default]
        else:
            if after_shard and after_shard not in self._by_name:
                raise invalid_field("page_token", RejectReason.INVALID_PAGE_TOKEN, "names no trading shard")
            start = self._by_name[after_shard] if after_shard else self.default
            targets = list(self.all[self.all.index(start) :])
        fills: list[trading_pb2.Fill] = []
        last, more, projected = "", False, 0
        for position, shard in enumerate(targets):
            ask = trading_pb2.ListFillsRequest()
            ask.CopyFrom(request)
            ask.limit = request.limit - len(fills)
            if position:  # a later shard is read from its start
                ask.after_trade_id, ask.after_side = 0, common_pb2.SIDE_UNSPECIFIED
            own = request.min_sequence if shard is self.default else 0
            ask.min_sequence = max(own, min_sequence_of(shard.name))
            page = await self._call(shard, shard.stub.ListFills, ask)
            fills += page.fills
            if shard is self.default or request.symbol:
                projected = page.projected_sequence
            if page.fills:
                last = shard.name
            if page.more or len(fills) >= request.limit:
                more = page.more or position < len(targets) - 1
                break
        return fills, last, more, projected

    def group_orders(self, order_ids: Iterable[str]) -> dict[str, list[str]]:
        """Order ids by the name of their shard ("" for ids naming a shard there is not)."""
        groups: dict[str, list[str]] = {}
        for order_id in order_ids:
            try:
                name = self.of_order(order_id).name
            except ServiceError:
                name = ""
            groups.setdefault(name, []).append(order_id)
        return groups


def _lost() -> ServiceError:
    return unavailable(RejectReason.PROTOCOL_ERROR, "trading answered a command's shard without it")
