"""What the page's buttons do: each one calls the function its CLI command calls, nothing else.

| page | CLI | function |
|---|---|---|
| crash / recover / pause / resume | `bullyproof kill / restart / pause / resume` | chaos.harness.process_action |
| a network fault with a button (node.faults `page`) | `bullyproof chaos NAME ...` | chaos.faults.network_fault |

The network faults' buttons, their inputs and what they send come from the fault registry
(node.faults.page_faults): `controls_html` draws them into the page, `act` reads each parameter by
its type (a partition's groups are the chosen nodes, links the from/to choice, durations whole
milliseconds). Both record what they did in the cluster's harness history, so the page's log shows
it (and shows the same lines when someone types the CLI commands in another terminal).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from chaos.faults import network_fault
from chaos.harness import process_action
from node.config import ConfigError
from node.faults import FaultKind, Param, page_faults

PROCESS = {"crash": "kill", "recover": "restart", "pause": "pause", "resume": "resume"}
NETWORK = tuple(kind.name for kind in page_faults())
KEYS = {"partition": "x", "heal": "h"}  # the page's keyboard shortcuts (dashboard/static/app.js)


def _node(body: dict[str, Any], key: str = "node") -> int:
    try:
        return int(body[key])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{key!r} must be a node id") from None


def _link(body: dict[str, Any]) -> str:
    return f"{_node(body, 'from')}->{_node(body, 'to')}"


def _number(body: dict[str, Any], param: Param) -> int:
    value = body.get(param.name, param.default if not param.required else param.example)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{param.name} must be a whole number{' of milliseconds' * (param.type == 'ms')}") from None
    if number < 0:
        raise ConfigError(f"{param.name} must not be negative")
    return number


def _value(param: Param, body: dict[str, Any]) -> Any:
    """One parameter of a fault, from what the page sent."""
    if param.type == "groups":  # the nodes chosen on the page, cut off from the rest
        nodes = sorted({int(n) for n in body.get("nodes") or []})
        if not nodes:
            raise ConfigError("choose the nodes to cut off first")
        return [nodes]
    if param.type == "links":
        return _link(body)
    if param.type in ("ms", "int"):
        return _number(body, param)
    if param.type == "node":
        return _node(body, param.name)
    raise ConfigError(f"the page cannot send a {param.type} ({param.name})")


def act(directory: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Carry out one page action (blocking: run it off the event loop). Raises ConfigError on bad input
    and whatever the underlying function raises (a Toxiproxy error, say) when it fails."""
    action = body.get("action")
    if action in PROCESS:
        rec = process_action(directory, _node(body), PROCESS[action])
        return {"action": action, "node": _node(body), "pid": rec["pid"]}
    kind = next((k for k in page_faults() if k.name == action), None)
    if kind is None:
        raise ConfigError(f"unknown action {action!r}; one of {', '.join([*PROCESS, *NETWORK])}")
    params = {p.name: _value(p, body) for p in kind.params}
    return {"action": action, **network_fault(directory, kind.name, **params)}


# ---- the page's controls, drawn from the registry ---------------------------------------------------------


def _input(param: Param) -> str:
    name = param.name.replace("_", "-")
    value = param.default if not param.required else param.example
    label = param.name.removesuffix("_ms").replace("_", " ")
    unit = " ms" if param.type == "ms" else ""
    step = ' step="10"' if param.type == "ms" else ""
    return (
        f'<label>{html.escape(label)} <input id="{name}" type="number" min="0"{step} value="{value or 0}" '
        f'aria-label="{html.escape(param.help)}">{unit}</label>'
    )


def _row(kind: FaultKind, with_link_choice: bool) -> str:
    parts = []
    types = {p.type for p in kind.params}
    if with_link_choice:
        parts.append('<label>from <select id="link-from" aria-label="link from"></select></label>')
        parts.append('<label>to <select id="link-to" aria-label="link to"></select></label>')
    parts += [_input(p) for p in kind.params if p.type in ("ms", "int")]
    key = f" <kbd>{KEYS[kind.name]}</kbd>" if kind.name in KEYS else ""
    params = html.escape(json.dumps([{"name": p.name, "type": p.type} for p in kind.params]))
    css = "fault heal" if kind.name == "heal" else "fault"
    parts.append(
        f'<button type="button" id="{kind.name}" class="{css}" data-fault="{kind.name}" data-params="{params}" '
        f'title="{html.escape(kind.description)}">{html.escape(kind.page)}{key}</button>'
    )
    if "groups" in types:
        parts.append('<span id="chosen" class="muted">none chosen</span>')
    return '<div class="row">\n  ' + "\n  ".join(parts) + "\n</div>"


def controls_html() -> str:
    """The network faults' controls of the page ("Break it"), one row per kind with a button."""
    rows, link_choice = [], False
    for kind in page_faults():
        needs_links = any(p.type == "links" for p in kind.params)
        rows.append(_row(kind, needs_links and not link_choice))
        link_choice = link_choice or needs_links
    return "\n".join(rows)
