"""The Backbone Python client SDK.

    from decimal import Decimal
    from backbone.client import Client

    with Client.connect("127.0.0.1:50051", api_key="bbk_...") as client:
        order = client.submit_order("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"))
        print(order.status, order.filled_quantity)

``AsyncClient`` offers the same calls for asyncio (``await AsyncClient.connect(...)``).

``client.replace_order(order_id, price=..., quantity=...)`` changes an open
order in place, and ``submit_order(..., order_type="market", quote_budget=...)``
buys for at most a quote amount.

For order entry at speed, ``client.order_stream()`` sends new orders,
replaces and cancels in batches over one stream and answers each on its own ticket::

    with client.order_stream() as stream:
        ticket = stream.submit("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"))
        print(ticket.result().status)

To follow books, ``client.market_data(["BTC-USD"], depth=5)`` keeps a local
book per symbol from snapshots and changes, and heals a lost message itself::

    with client.market_data(["BTC-USD"], depth=5) as events:
        for event in events:
            print(event.book.bids[:1], event.book.asks[:1], event.trades)

Prices, quantities and amounts are exact ``Decimal`` values, never floats.
Every failure is a :class:`BackboneError` carrying the gRPC status code, a
:class:`RejectReason` (each member says what it means and what to do), a
sentence, and the wrong fields of a bad request.
"""

from backbone.reasons import RejectReason, Stage
from backbone.runtime.errors import FieldViolation

from ._async import AsyncClient, AsyncExecutionStream
from ._async_market_data import AsyncMarketDataStream
from ._async_order_stream import AsyncOrderStream, AsyncOrderTicket
from ._errors import BackboneError
from ._market_data import MarketDataEvent, MarketTrade
from ._models import (
    Account,
    Asset,
    Balance,
    CancelOrder,
    CancelReason,
    Deposit,
    ExecutionReport,
    ExecutionType,
    Fill,
    FillsPage,
    Instrument,
    InstrumentStatus,
    LiquiditySide,
    NewOrder,
    Order,
    OrderBook,
    OrderCommand,
    OrderResult,
    OrdersPage,
    OrderStatus,
    OrderType,
    PriceLevel,
    ReplaceOrder,
    SelfTradePrevention,
    Side,
    TimeInForce,
)
from ._order_stream import EventsMode, OrderStreamEvent
from ._sync import Client, ExecutionStream
from ._sync_market_data import MarketDataStream
from ._sync_order_stream import OrderStream, OrderTicket

__all__ = [
    "Account",
    "Asset",
    "AsyncClient",
    "AsyncExecutionStream",
    "AsyncMarketDataStream",
    "AsyncOrderStream",
    "AsyncOrderTicket",
    "BackboneError",
    "Balance",
    "CancelOrder",
    "CancelReason",
    "Client",
    "Deposit",
    "EventsMode",
    "ExecutionReport",
    "ExecutionStream",
    "ExecutionType",
    "FieldViolation",
    "Fill",
    "FillsPage",
    "Instrument",
    "InstrumentStatus",
    "LiquiditySide",
    "MarketDataEvent",
    "MarketDataStream",
    "MarketTrade",
    "NewOrder",
    "Order",
    "OrderBook",
    "OrderCommand",
    "OrderResult",
    "OrderStatus",
    "OrderStream",
    "OrderStreamEvent",
    "OrderTicket",
    "OrderType",
    "OrdersPage",
    "PriceLevel",
    "RejectReason",
    "ReplaceOrder",
    "SelfTradePrevention",
    "Side",
    "Stage",
    "TimeInForce",
]
