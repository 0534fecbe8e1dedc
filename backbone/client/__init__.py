"""The Backbone Python client SDK.

    from decimal import Decimal
    from backbone.client import Client

    with Client.connect("127.0.0.1:50051", api_key="bbk_...") as client:
        order = client.submit_order("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"))
        print(order.status, order.filled_quantity)

``AsyncClient`` offers the same calls for asyncio (``await AsyncClient.connect(...)``).
Prices, quantities and amounts are exact ``Decimal`` values, never floats.
Every failure is a :class:`BackboneError` carrying the gRPC status code, a
:class:`RejectReason` (each member says what it means and what to do), a
sentence, and the wrong fields of a bad request.
"""

from backbone.reasons import RejectReason, Stage
from backbone.runtime.errors import FieldViolation

from ._async import AsyncClient, AsyncExecutionStream
from ._errors import BackboneError
from ._models import (
    Account,
    Asset,
    Balance,
    Deposit,
    ExecutionReport,
    ExecutionType,
    Instrument,
    LiquiditySide,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    PriceLevel,
    Side,
    TimeInForce,
)
from ._sync import Client, ExecutionStream

__all__ = [
    "Account",
    "Asset",
    "AsyncClient",
    "AsyncExecutionStream",
    "BackboneError",
    "Balance",
    "Client",
    "Deposit",
    "ExecutionReport",
    "ExecutionStream",
    "ExecutionType",
    "FieldViolation",
    "Instrument",
    "LiquiditySide",
    "Order",
    "OrderBook",
    "OrderStatus",
    "OrderType",
    "PriceLevel",
    "RejectReason",
    "Side",
    "Stage",
    "TimeInForce",
]
