"""`bullyproof leave`: a node asks, with its own certificate, to be taken out of the configuration.

Through the protocol, as `bullyproof member remove` does: the leader removes the node through a joint
configuration (node.core.membership); if the leaving node leads, it hands leadership over first (its
own certificate may ask its own server to transfer). Before anything it writes the state directory's
LEAVING_FILE, so that the node stops asking to be added (--self-join) while it leaves.

Blocking calls (node.observer) with the node's own certificate, retried while a change is in
flight, the leader moves or no one leads, until the deadline. Each step is printed as a JSON line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from node.channels import dial_as
from node.observer import (
    HandoverFailed,
    change_membership,
    get_status,
    leading_node,
    transfer_leadership,
    views_of,
)
from node.runtime.state import LEAVING_FILE
from node.tls import Tls, node_name

# Refusals that retrying cannot change: the caller may not do this, or asked for nonsense.
FINAL = frozenset({"PERMISSION_DENIED", "INVALID_ARGUMENT", "UNAUTHENTICATED", "UNIMPLEMENTED"})
# How long the node must be seen outside the leader's configuration before leave is done: an addition
# the node asked for just before it read LEAVING_FILE has reached the leader by then.
SETTLE_S = 1.0


def mark_leaving(state_dir: Path) -> None:
    """Tell the node on this state directory to stop asking to be added (node.runtime.joining)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / LEAVING_FILE).write_text("left by `bullyproof leave`; removed when the node starts again\n")


def choose_successor(node_id: int, voters: list[int], keep: Callable[[int], bool]) -> int:
    """Whom a leaving leader hands leadership to: the highest voter below it that stays, else the
    highest that stays, else the highest. Below it: nodes leaving together (a StatefulSet scaled down
    by several pods stops them at once) never hand leadership back and forth, since each hands it
    to a lower node than itself; a leader that stays is the one that removes them."""
    for pool in ([v for v in voters if keep(v) and v < node_id], [v for v in voters if keep(v)], voters):
        if pool:
            return max(pool)
    raise ValueError("no other voter")


def leave(
    node_id: int,
    address_of: Callable[[int], str],
    tls: Tls | None,
    deadline_s: float,
    members: tuple[int, ...] = (),
    keep: Callable[[int], bool] = lambda node: True,
    say: Callable[[dict], None] = lambda step: print(json.dumps(step), flush=True),
    interval_s: float = 0.2,
) -> dict:
    """Take node `node_id` out of the configuration; the leader's configuration once it is out.

    `address_of(N)`: node N's client address. The members asked who leads are those the node's own
    status names (its configuration, its peers) and `members`. If the node leads, leadership goes
    first to another voter (choose_successor: below it, and one that `keep` says stays, if any).
    Raises HandoverFailed: at once for a refusal retrying cannot change (FINAL), with
    DEADLINE_EXCEEDED once `deadline_s` has passed."""
    end = time.monotonic() + deadline_s
    told: set[str] = set()

    def step(what: dict) -> None:  # each distinct step once, not at every attempt
        key = json.dumps(what, sort_keys=True)
        if key not in told:
            told.add(key)
            say(what)

    known: set[int] = set(members) | {node_id}
    out_since: float | None = None
    last_error = "no leader answered"
    while True:
        for n in known:
            dial_as(address_of(n), tls, node_name(n))
        own = get_status(address_of(node_id))
        if not isinstance(own, str):
            c = own.configuration
            known |= {*c.voters, *c.learners, *c.previous, *c.notify, *(p.id for p in own.peers)}
            for n in known:
                dial_as(address_of(n), tls, node_name(n))
        found = leading_node(views_of({n: address_of(n) for n in sorted(known)}))
        if found is not None:
            leader = found[0]
            st = get_status(address_of(leader))
            if isinstance(st, str):
                last_error = f"node {leader} (the leader) did not answer: {st}"
            else:
                c = st.configuration
                known |= {*c.voters, *c.learners}
                if node_id not in (*c.voters, *c.learners):
                    now = time.monotonic()
                    out_since = now if out_since is None else out_since
                    if now - out_since >= SETTLE_S:
                        result = {
                            "left": node_id,
                            "leader": leader,
                            "voters": list(c.voters),
                            "learners": list(c.learners),
                        }
                        say(result)
                        return result
                else:
                    out_since = None
                    others = [v for v in c.voters if v != node_id]
                    if leader == node_id and not others:
                        raise HandoverFailed(
                            "FAILED_PRECONDITION",
                            f"node {node_id} is the only voter: it cannot leave (add another first)",
                        )
                    try:
                        if leader == node_id:
                            successor = choose_successor(node_id, others, keep)
                            step({"step": "transfer", "from": node_id, "to": successor})
                            transfer_leadership(
                                address_of(node_id),
                                successor,
                                timeout_ms=0,
                                timeout_s=max(1.0, min(10.0, end - time.monotonic())),
                            )
                        else:
                            step({"step": "remove", "node": node_id, "leader": leader})
                            change_membership(
                                address_of(leader),
                                "remove",
                                node_id,
                                timeout_ms=0,
                                timeout_s=max(1.0, min(10.0, end - time.monotonic())),
                            )
                    except HandoverFailed as exc:
                        if exc.code in FINAL:
                            raise
                        last_error = str(exc)
                        step({"step": "retry", "because": last_error})
        if time.monotonic() >= end:
            raise HandoverFailed(
                "DEADLINE_EXCEEDED",
                f"node {node_id} is still a member after {deadline_s:g} s "
                f"({last_error}); once the cluster has a leader, remove it "
                f"with the admin certificate (ChangeMembership, or `bullyproof "
                f"member remove {node_id}`)",
            )
        time.sleep(interval_s)
