"""What the page's buttons do: each one calls the function its CLI command calls, nothing else.

| page | CLI | function |
|---|---|---|
| crash / recover / pause / resume | `bullyproof kill / restart / pause / resume` | chaos.harness.process_action |
| partition the chosen nodes from the rest | `bullyproof chaos partition 1,2 / 3,4,5` | chaos.cli.network_fault("partition") |
| cut one direction | `bullyproof chaos cut '5->1'` | chaos.cli.network_fault("cut") |
| add latency | `bullyproof chaos latency '3->1' 200ms --jitter 50ms` | chaos.cli.network_fault("latency") |
| heal all | `bullyproof chaos heal` | chaos.cli.network_fault("heal") |

Both record what they did in the cluster's harness history, so the page's log shows it (and shows the
same lines when someone types the CLI commands in another terminal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chaos.cli import network_fault
from chaos.harness import process_action
from node.config import ConfigError

PROCESS = {"crash": "kill", "recover": "restart", "pause": "pause", "resume": "resume"}
NETWORK = ("partition", "cut", "latency", "heal")


def _node(body: dict[str, Any], key: str = "node") -> int:
    try:
        return int(body[key])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{key!r} must be a node id") from None


def _link(body: dict[str, Any]) -> str:
    return f"{_node(body, 'from')}->{_node(body, 'to')}"


def act(directory: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Carry out one page action (blocking: run it off the event loop). Raises ConfigError on bad input
    and whatever the underlying function raises (a Toxiproxy error, say) when it fails."""
    action = body.get("action")
    if action in PROCESS:
        rec = process_action(directory, _node(body), PROCESS[action])
        return {"action": action, "node": _node(body), "pid": rec["pid"]}
    if action == "partition":
        nodes = sorted({int(n) for n in body.get("nodes") or []})
        if not nodes:
            raise ConfigError("choose the nodes to cut off first")
        return {"action": action, **network_fault(directory, "partition", groups=[nodes])}
    if action == "cut":
        return {"action": action, **network_fault(directory, "cut", link=_link(body))}
    if action == "latency":
        try:
            latency_ms, jitter_ms = int(body.get("latency_ms", 200)), int(body.get("jitter_ms", 0))
        except (TypeError, ValueError):
            raise ConfigError("latency and jitter must be whole milliseconds") from None
        if latency_ms < 0 or jitter_ms < 0:
            raise ConfigError("latency and jitter must not be negative")
        return {
            "action": action,
            **network_fault(directory, "latency", link=_link(body), latency_ms=latency_ms, jitter_ms=jitter_ms),
        }
    if action == "heal":
        return {"action": action, **network_fault(directory, "heal")}
    raise ConfigError(f"unknown action {action!r}; one of {', '.join([*PROCESS, *NETWORK])}")
