"""For other services: the Python SDK (asyncio), and blocking observer calls (node.client.observer).

Everything in node.client.sdk's __all__ is importable from here, `Tls` included (it lives in node.tls;
the README's examples build their certificates with it), so `from node.client import *` works too.
The fences for your own databases are in node.client.fencing.
"""

from node.client.sdk import (  # noqa: F401
    Backoff,
    BlockingLeaseToken,
    EpochTaken,
    Fenced,
    FencedTerm,
    FencedWriter,
    FencingRefused,
    HandshakeRefused,
    Leader,
    LeaderClient,
    LeaderEvent,
    Leadership,
    LeaseToken,
    NodeError,
    StaleEpoch,
    Tls,
    WriteResult,
    __all__,
    is_leading,
    parse_addresses,
)
