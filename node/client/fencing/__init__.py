"""Fencing where your data lives: a deposed leader's late write is refused by your own database.

The epoch a leader holds is its fencing token. Each fence keeps, in the database it guards, one record
per resource (a name you choose: a row, a key, a job): the highest epoch accepted there and the writer
that claimed it. A write is refused if its epoch is below that (StaleEpoch) or equal to it from another
writer (EpochTaken), both FencingRefused; otherwise it claims the record. The check, the claim and your
own write happen in one transaction (PostgreSQL, SQLite) or one script (Redis), so no newer leader's
write can come between them.

    PostgresFence, BlockingPostgresFence   psycopg 3; `transaction(resource, writer_id, epoch)` gives a connection
    RedisFence, BlockingRedisFence         redis-py; `set(...)` keys, or `eval(...)` your own Lua
    SqliteFence, BlockingSqliteFence       the standard library's sqlite3 (asyncio: in a thread)
    StoreFence                             the cluster's own fenced store (`bullyproof store`)

Every asyncio fence has write(resource, writer_id, epoch, value), read(resource) -> FenceState and
close(); `open_fence(url)` makes one from a URL. Made with `log=True`, a PostgreSQL, Redis or SQLite
fence also keeps a log of the writes it accepted, in the same transaction or script: `write` returns
the write's seq there and `read_log(after_seq)` reads it back (AcceptedWrite); the store keeps its own.
In a Leadership's work, `token.fenced(fence)` binds one to the term, so writes carry its epoch and the
node's id without the work passing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from node.client.fencing.base import (
    LOG,
    NEVER_WRITTEN,
    AcceptedWrite,
    Fence,
    FenceBug,  # noqa: F401 (for tests, which plant bugs with it)
    FencedTerm,
    FenceState,
)
from node.client.fencing.errors import EpochTaken, FencingRefused, StaleEpoch
from node.client.fencing.sqlite import BlockingSqliteFence, SqliteFence

__all__ = [
    "AcceptedWrite",
    "BlockingPostgresFence",
    "BlockingRedisFence",
    "BlockingSqliteFence",
    "EpochTaken",
    "Fence",
    "FenceState",
    "FencedTerm",
    "FencingRefused",
    "LOG",
    "NEVER_WRITTEN",
    "PostgresFence",
    "RedisFence",
    "SqliteFence",
    "StaleEpoch",
    "StoreFence",
    "open_fence",
]

# Imported on first use: psycopg, redis-py and gRPC need not load for a SQLite fence.
_LAZY = {
    "PostgresFence": "node.client.fencing.postgres",
    "BlockingPostgresFence": "node.client.fencing.postgres",
    "RedisFence": "node.client.fencing.redis",
    "BlockingRedisFence": "node.client.fencing.redis",
    "StoreFence": "node.client.fencing.store",
}
STORE_SCHEME = "bullyproof-store"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_fence(url: str, *, blocking: bool = False, **options: Any) -> Any:
    """A fence from a URL; `options` go to its class (table=, prefix=, log=, _planted=, ...).

        postgresql://USER@HOST:PORT/DB       PostgresFence (also postgres://)
        redis://HOST:PORT/DB                 RedisFence (also rediss://, unix://)
        sqlite:///ABSOLUTE/PATH.db           SqliteFence (sqlite:relative/path.db for a relative one)
        bullyproof-store://HOST:PORT         StoreFence, plaintext; ?certs=DIR for mutual TLS

    `blocking=True` gives the Blocking... class instead (not for the fenced store).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return (__getattr__("BlockingPostgresFence") if blocking else __getattr__("PostgresFence"))(url, **options)
    if scheme in ("redis", "rediss", "unix"):
        return (__getattr__("BlockingRedisFence") if blocking else __getattr__("RedisFence"))(url, **options)
    if scheme == "sqlite":
        parts = urlsplit(url)
        if parts.netloc:
            raise ValueError(f"{url!r}: write sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH (no host)")
        path = unquote(parts.path)
        if not path:
            raise ValueError(f"{url!r} names no file")
        return (BlockingSqliteFence if blocking else SqliteFence)(Path(path), **options)
    if scheme == STORE_SCHEME:
        if blocking:
            raise ValueError("the fenced store's client is asyncio only")
        parts = urlsplit(url)
        certs = parse_qs(parts.query).get("certs", [None])[-1]
        return __getattr__("StoreFence")(parts.netloc, certs=certs, insecure=certs is None, **options)
    raise ValueError(f"{url!r}: want a postgresql://, redis://, sqlite:// or {STORE_SCHEME}:// URL")
