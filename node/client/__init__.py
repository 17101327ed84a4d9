"""For other services: the Python SDK (asyncio), and blocking observer calls (node.client.observer)."""

from node.client.sdk import (  # noqa: F401
    Backoff,
    Fenced,
    FencedWriter,
    HandshakeRefused,
    Leader,
    LeaderClient,
    LeaderEvent,
    Leadership,
    LeaseToken,
)
from node.client.sdk import __all__  # noqa: F401
