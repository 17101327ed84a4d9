"""Protocol instants: the moments a fault is most dangerous at, by name.

Each elector class lists its own in ``INSTANTS`` (name -> what it means) and reports them two ways:
states it is in (``instants(now)``: inside the promise window it honours after a boot, a lease about
to end, a reassert in flight...) and moments (``Reached`` events: a proposal just failed, the same
leader won again...). The instants below any driver reads off an elector's Output, whatever the mode.
The simulator's search waits for instants (`until NAME`), holds messages until one, and reports
which were reached and which never were.
"""

from __future__ import annotations

from .types import (
    PROMISE_REPLY_TYPES,
    BecameLeader,
    ElectionStarted,
    MsgType,
    Output,
    PromiseReleased,
    Reached,
    SteppedDown,
)

GENERIC_INSTANTS: dict[str, str] = {
    "ack": "sent a granted acknowledgement (a promise)",
    "refusal": "refused an acknowledgement",
    "election": "started an election",
    "won": "became leader of an epoch",
    "released": "honoured a resigning leader's release",
    "resign-sent": "a leader sent its resigning heartbeats (a resignation in flight)",
    "transfer-sent": "a leader handed over to a named successor",
    "stepdown-lease_expired": "a leader stepped down as its lease ran out",
    "stepdown-higher_epoch": "a leader stepped down on seeing a newer epoch",
    "stepdown-resigned": "a leader resigned",
    "stepdown-preempted": "a leader handed over to a preferred higher node",
    "leader": "is leader in its own view",
    "candidate": "is a candidate",
}


def instants_of_output(out: Output) -> list[str]:
    """The instants one step's Output shows, in the order they happened."""
    found = []
    for event in out.events:
        if isinstance(event, Reached):
            found.append(event.instant)
        elif isinstance(event, BecameLeader):
            found.append("won")
        elif isinstance(event, SteppedDown):
            found.append(f"stepdown-{event.reason.value}")
        elif isinstance(event, PromiseReleased):
            found.append("released")
        elif isinstance(event, ElectionStarted):
            found.append("election")
    for msg in out.messages:
        if msg.type in PROMISE_REPLY_TYPES:
            found.append("ack" if msg.granted else "refusal")
        elif msg.type == MsgType.HEARTBEAT and msg.resigning:
            found.append("transfer-sent" if msg.successor else "resign-sent")
    return found
