"""The simulator as a fault target: node.faults's interface (FaultTarget, ScenarioWorld) over a Network.

A scenario written against node.faults.ScenarioWorld (chaos/scenarios.py) runs here unchanged, as it runs
against real processes through Toxiproxy (chaos/harness.py ChaosCluster): the same faults in the same
units (milliseconds, node ids, directed links), recorded in the history as the real harness records
them (a `fault` start named after the fault, with what it did, and its stop; `heal`; `process`
events), and time passing as simulated ticks (`sleep`), so the same judge reads either history.

Where the worlds differ:
* a link here is what one node sends another, requests and replies alike; a Toxiproxy link a->b
  carries a's requests to b and b's replies to them. Latency on a link delays every message a sends
  b, for `latency_ms` give or take `jitter_ms`, in whole ticks (at least one);
* `clear` heals the links of that fault whole (whatever else was set on them too); Toxiproxy removes
  only that fault's toxics;
* transfers and membership changes wait for what they asked for in simulated time, and raise
  TimeoutError where a real call would fail (node.observer.HandoverFailed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from node.core import MembershipRefused, Timing
from node.faults import ActiveFaults, DroppedLinks, Link, all_links
from node.sim.network import Network

PAUSE_FOREVER_TICKS = 10**12  # a pause lasts until `resume`, as a SIGSTOP does


class SimTarget(DroppedLinks):
    """node.faults.ScenarioWorld over a simulated Network whose ticks last `tick_ms`."""

    def __init__(self, net: Network, tick_ms: int, heartbeat_interval_ms: int, election_timeout_ms: int) -> None:
        self.net = net
        self.tick_ms = tick_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.election_timeout_ms = election_timeout_ms
        self.active = ActiveFaults()

    # ---- what a scenario reads ---------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return list(self.net.members)

    @property
    def joining(self) -> tuple[int, ...]:
        return tuple(sorted(self.net.joining))

    def all_peer_links(self) -> list[Link]:
        return all_links(self.ids)

    def leader(self) -> tuple[int, int] | None:
        return self.net.agreed_leader()

    def current_leader(self) -> int | None:
        claims = [(self.net.view(m).epoch, m) for m in self.net.leaders()]
        return max(claims)[1] if claims else None

    def ticks(self, seconds: float) -> int:
        return math.ceil(seconds * 1000 / self.tick_ms)

    def sleep(self, seconds: float) -> None:
        self.net.run(self.ticks(seconds))

    def _in_configuration(self, node: int) -> bool:
        m = self.net.membership(node)
        return m is None or node in m.everyone

    def wait_for_leader(self, timeout_s: float = 15.0, exclude: Iterable[int] = ()) -> tuple[int, int]:
        """Until every node but `exclude` (a crashed one never answers) agrees, those outside the
        configuration aside; TimeoutError after timeout_s of simulated time."""
        skip = set(exclude)
        found: list[tuple[int, int]] = []

        def agreed() -> bool:
            nodes = [m for m in self.ids if m not in skip and self._in_configuration(m)]
            got = self.net.agreed_among(nodes)
            if got is not None:
                found.append(got)
            return got is not None

        self._run_until(agreed, timeout_s, "no agreed leader")
        return found[-1]

    def _run_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        try:
            self.net.run_until(predicate, self.ticks(timeout_s))
        except TimeoutError:
            raise TimeoutError(f"{what} within {timeout_s:g} s (simulated; tick {self.net.now})") from None

    # ---- the network ---------------------------------------------------------------------------------

    def _drop(self, fault: str, links: Iterable[Link], detail: Mapping[str, object]) -> None:
        links = list(links)
        self.net.drop_links(links, fault, detail)
        self.active.add(fault, links)

    def latency(self, links: Iterable[Link], latency_ms: int, jitter_ms: int = 0, fault: str = "latency") -> None:
        links = list(links)
        low = max(1, math.floor((latency_ms - jitter_ms) / self.tick_ms))
        high = max(low, math.ceil((latency_ms + jitter_ms) / self.tick_ms))
        detail = {"type": "latency", "links": [f"{a}->{b}" for a, b in links], "latency": latency_ms}
        self.net.degrade_links(links, fault, {**detail, "jitter": jitter_ms}, min_delay_ticks=low, max_delay_ticks=high)
        self.active.add(fault, links)

    def clear(self, fault: str) -> None:
        self.net.lift(fault, self.active.pop(fault))

    def heal(self) -> None:
        self.active.clear()
        self.net.heal()

    # ---- the processes -------------------------------------------------------------------------------

    def kill(self, node: int) -> None:
        self.net.crash(node)

    def restart(self, node: int) -> None:
        """As the launcher restarts a node: SIGKILL first if it runs (paused too), then start it."""
        if not self.net.crashed(node):
            self.net.crash(node)
        self.net.restart(node)

    def pause(self, node: int) -> None:
        self.net.pause(node, PAUSE_FOREVER_TICKS)

    def resume(self, node: int) -> None:
        self.net.resume(node)

    def retime(self, node: int, election_timeout_ms: int) -> None:
        timing = Timing.from_ms(
            self.heartbeat_interval_ms,
            election_timeout_ms,
            self.tick_ms,
            self.net.timings[node].preempt_hold_down_ticks * self.tick_ms,
        )
        if not self.net.crashed(node):
            self.net.crash(node)
        self.net.restart(node, timing)

    # ---- what an operator does ------------------------------------------------------------------------

    def _agreed_on(self) -> int | None:
        """The leader the running nodes agree on, if they do."""
        agreed = self.net.agreed_leader()
        return None if agreed is None else agreed[0]

    def _running_leader(self, timeout_s: float) -> int:
        self._run_until(lambda: self._agreed_on() is not None, timeout_s, "no agreed leader among the running nodes")
        return self._agreed_on() or 0

    def transfer(self, target: int, timeout_s: float = 10.0) -> tuple[int, int]:
        """The agreed leader hands over to `target`; (target, epoch) once everyone follows it."""
        leader, epoch = self.wait_for_leader()
        if leader == target:
            return leader, epoch
        self.net.record.note("transfer", node=leader, target=target, epoch=epoch)
        self.net.transfer(leader, target)
        self._run_until(lambda: (self.leader() or (0, 0))[0] == target, timeout_s, f"node {target} did not take over")
        return self.leader() or (target, 0)

    def change_membership(self, action: str, target: int, timeout_s: float = 10.0) -> object:
        """An operator's `bullyproof member add|remove` at the leader (removing the leader hands over
        first); the configuration once the leader runs it with the change made."""
        leader = self._running_leader(timeout_s)  # as the CLI finds it: among the nodes that answer
        if action == "remove" and target == leader:
            m = self.net.membership(leader)
            successor = max(v for v in m.voters if v != leader and self.net.running(v))
            self.net.transfer(leader, successor)
            self._run_until(lambda: self._agreed_on() == successor, timeout_s, f"node {successor} did not take over")
            leader = successor
        m = self.net.membership(leader)
        if m is None:
            raise MembershipRefused(f"mode {self.net.mode.value} keeps its list")
        if action == "add":
            self.net.change_membership(leader, m.voters, m.learners + (target,))
        elif action == "remove":
            self.net.change_membership(
                leader, tuple(v for v in m.voters if v != target), tuple(x for x in m.learners if x != target)
            )
        else:
            raise ValueError(f"member {action}: add or remove")

        def done() -> bool:
            now = self.net.membership(leader)
            if now is None:
                return False
            settled = now.previous == now.voters
            return settled and ((target in now.voters) == (action == "add"))

        self._run_until(done, timeout_s, f"member {action} {target} did not complete")
        return self.net.membership(leader)
