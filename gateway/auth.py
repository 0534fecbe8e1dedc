"""Who is calling: API keys -> accounts, and the admin key.

An API key is looked up by its SHA-256 digest (settlement stores only
digests) and the answer is cached in process for a short time, in a bounded
LRU, so the hot path does not call settlement per order. Unknown digests are
cached too (keys are random and generated before their account exists, so a
digest unknown now is unknown for good); they live in their own, smaller
LRU so a flood of wrong keys cannot evict the good ones.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, unauthenticated

API_KEY_HEADER = "x-api-key"
ADMIN_KEY_HEADER = "x-admin-key"

# settlement.AuthenticateApiKey: digest -> account id, or None when the digest is unknown.
Authenticate = Callable[[bytes], Awaitable[str | None]]


def metadata_value(metadata: Iterable[Any] | None, key: str) -> str:
    """The first value of `key` in call metadata, as text ('' when absent)."""
    for item in metadata or ():
        name, value = item[0], item[1]
        if name == key:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return ""


def api_key_digest(api_key: str) -> bytes:
    """SHA-256 of an API key, the only form in which keys are stored."""
    return hashlib.sha256(api_key.encode("utf-8")).digest()


class _Lru:
    """A small LRU with per-entry expiry."""

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[bytes, tuple[float, str]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock

    def get(self, key: bytes) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: bytes, value: str) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


class ApiKeyAuthenticator:
    """Maps the x-api-key of a call to its account, with a bounded TTL cache."""

    def __init__(
        self,
        authenticate: Authenticate,
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = 10_000,
        negative_ttl_seconds: float = 5.0,
        max_negative_entries: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authenticate = authenticate
        self._known = _Lru(max_entries, ttl_seconds, clock)
        self._unknown = _Lru(max_negative_entries, negative_ttl_seconds, clock)

    @property
    def cached(self) -> int:
        return len(self._known)

    def forget(self) -> None:
        self._known.clear()
        self._unknown.clear()

    async def account_of(self, metadata: Iterable[Any] | None) -> str:
        """The account of the call's API key; UNAUTHENTICATED when absent or unknown."""
        api_key = metadata_value(metadata, API_KEY_HEADER)
        if not api_key:
            raise unauthenticated(
                RejectReason.MISSING_API_KEY, f"this call needs an API key in the {API_KEY_HEADER!r} metadata"
            )
        return await self.account_of_key(api_key)

    async def account_of_key(self, api_key: str) -> str:
        digest = api_key_digest(api_key)
        account = self._known.get(digest)
        if account is not None:
            return account
        if self._unknown.get(digest) is None:
            account = await self._authenticate(digest)
            if account:
                self._known.put(digest, account)
                return account
            self._unknown.put(digest, "")
        raise unauthenticated(
            RejectReason.UNKNOWN_API_KEY, "the API key is not known; check the x-api-key value"
        )


def check_admin(metadata: Iterable[Any] | None, admin_key: str) -> None:
    """Accept the call only with the configured admin key (constant-time comparison)."""
    if not admin_key:
        raise unauthenticated(
            RejectReason.ADMIN_DISABLED,
            "the admin API is disabled on this gateway: set BACKBONE_ADMIN_KEY to enable it",
        )
    given = metadata_value(metadata, ADMIN_KEY_HEADER)
    if not given:
        raise unauthenticated(
            RejectReason.MISSING_ADMIN_KEY,
            f"this call needs the admin key in the {ADMIN_KEY_HEADER!r} metadata",
        )
    if not hmac.compare_digest(given.encode("utf-8"), admin_key.encode("utf-8")):
        raise ServiceError(
            grpc.StatusCode.UNAUTHENTICATED, RejectReason.INVALID_ADMIN_KEY, "the admin key is not valid"
        )
