"""Who votes: a cluster's configuration, and the rules for changing it one member at a time.

A configuration is durable state, like a promise (it travels inside `Promise`, written before anything
that reveals it leaves the node), and every peer message carries its sender's. The rules (docs/design.md,
*Membership changes*) are Raft's single-server changes, with the change agreed by a majority of both the
old and the new voters before the next one may start:

* **Order.** Configurations are ordered by (term, index): `term` is the epoch of the leader that made
  it, `index` its place in the chain of changes. A node only ever moves forward: it adopts any later
  configuration it hears of (persisting it before it answers), and refuses to count, grant or
  acknowledge anything from an earlier one or from a different one of the same order.
* **Counting.** A node counts majorities against its own voters. Two configurations one change apart
  (one voter more or less) have intersecting majorities, so the promise rules keep leases disjoint.
* **Changing.** Only a leader changes the configuration: one voter added or removed (or learners
  changed) per change, made in its own epoch, and only once its current configuration has been
  acknowledged in its epoch by a majority of the current voters and of the voters before. Anything
  older is then adopted by too few to elect: a stale node is refused, hears the newer configuration in
  the refusal, and adopts it.
* **Learners.** A new member joins as a learner (hears heartbeats, counts for nothing, never stands)
  and the leader promotes it once it has acknowledged the configuration that names it.
"""

from __future__ import annotations

from dataclasses import dataclass


def configuration_id(members: tuple[int, ...] | list[int], learners: tuple[int, ...] = (), index: int = 0,
                     term: int = 0) -> int:
    """A fingerprint of a configuration (32-bit FNV-1a, never 0); of the initial list alone, it is the
    fingerprint of its sorted ids. Shown by status and in refusals ("we run 3f2a…")."""
    text = ",".join(map(str, sorted(members)))
    if learners or index or term:
        text += "|" + ",".join(map(str, sorted(learners))) + f"|{index}|{term}"
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h or 1


class MembershipRefused(ValueError):
    """A membership change that cannot be made now, or at all; the message says why."""


# The reason a reply carries when it refused a message for its configuration (Message.refusal).
STALE = "configuration-stale"  # the sender runs an earlier configuration than the receiver
CONFLICT = "configuration-conflict"  # same order, different members: two lists that were never one
OUTSIDE = "not-a-member"  # the receiver is in no configuration's voters or learners (removed, or joining)


@dataclass(frozen=True)
class Membership:
    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()
    index: int = 0
    term: int = 0
    # The voters of the configuration this one changed (the initial list: its own voters). A leader
    # may change again only once a majority of these and of `voters` acknowledged this configuration.
    previous: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", tuple(sorted(self.voters)))
        object.__setattr__(self, "learners", tuple(sorted(self.learners)))
        object.__setattr__(self, "previous", tuple(sorted(self.previous or self.voters)))
        if set(self.voters) & set(self.learners):
            raise ValueError(f"nodes {sorted(set(self.voters) & set(self.learners))} are both voter and learner")
        if len(set(self.voters)) != len(self.voters) or len(set(self.learners)) != len(self.learners):
            raise ValueError("duplicate ids in a configuration")
        if any(m <= 0 for m in self.voters + self.learners):
            raise ValueError("member ids must be positive")

    @property
    def order(self) -> tuple[int, int]:
        return (self.term, self.index)

    @property
    def id(self) -> int:
        return configuration_id(self.voters, self.learners, self.index, self.term)

    @property
    def everyone(self) -> tuple[int, ...]:
        return tuple(sorted(self.voters + self.learners))

    def describe(self) -> str:
        learners = f", learners {','.join(map(str, self.learners))}" if self.learners else ""
        return f"configuration {self.index} of term {self.term} (voters {','.join(map(str, self.voters))}{learners})"

    def compare(self, other: Membership) -> str:
        """'' when the same, 'later' when `other` comes after this one, else the refusal reason."""
        if other.order > self.order:
            return "later"
        if other.order < self.order:
            return STALE
        return "" if other == self else CONFLICT

    def changed(self, voters: tuple[int, ...], learners: tuple[int, ...], term: int) -> Membership:
        """The next configuration, made by the leader of epoch `term`: at most one voter added or
        removed. Raises MembershipRefused with the reason otherwise."""
        voters, learners = tuple(sorted(set(voters))), tuple(sorted(set(learners)))
        if not voters:
            raise MembershipRefused("a configuration needs at least one voter")
        if set(voters) & set(learners):
            raise MembershipRefused(f"node {min(set(voters) & set(learners))} cannot be both voter and learner")
        if any(m <= 0 for m in voters + learners):
            raise MembershipRefused("member ids must be positive integers")
        if len(set(voters) ^ set(self.voters)) > 1:
            raise MembershipRefused(
                f"voters {','.join(map(str, self.voters))} -> {','.join(map(str, voters))} changes more than one "
                "voter; change one member at a time")
        if voters == self.voters and learners == self.learners:
            raise MembershipRefused(f"{self.describe()} already")
        return Membership(voters, learners, self.index + 1, term, previous=self.voters)


def initial(members: tuple[int, ...]) -> Membership:
    """The configuration a node starts with before it has heard of any change: its --peers list."""
    return Membership(tuple(members))


def joining(node_id: int) -> Membership:
    """A node started to join a running cluster: in no configuration yet (it backs no one and never
    stands), ordered before every configuration a cluster runs, so it adopts the first it hears."""
    return Membership((), (), index=0, term=-1)
