"""Backbone: a gRPC trading system backbone (gateway, risk, trading, settlement)."""

__version__ = "0.1.0"
