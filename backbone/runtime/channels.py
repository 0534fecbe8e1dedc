"""Channels from one service to another, all with the same bounded options."""

from __future__ import annotations

import grpc

from backbone.runtime.config import Settings


def channel_options(settings: Settings) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


def open_channel(target: str, settings: Settings) -> grpc.aio.Channel:
    """An insecure aio channel to `target` with the shared options."""
    return grpc.aio.insecure_channel(target, options=channel_options(settings))
