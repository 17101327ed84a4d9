"""Who votes: a cluster's configuration, and the rules for changing it one member at a time.

A configuration is durable state, like a promise (it travels inside `Promise`, written before anything
that reveals it leaves the node), and every peer message carries its sender's. The rules (docs/design.md,
*Membership changes*) are Raft's joint consensus, one voter at a time:

* **Order.** Configurations are ordered by (term, index): `term` is the epoch of the leader that made
  it, `index` its place in the chain of changes. A node only ever moves forward: it adopts any later
  configuration it hears of (persisting it before it answers), and refuses to count, grant or
  acknowledge anything from an earlier one or from a different one of the same order.
* **Two steps per change.** A leader changes voters V to V' through a *joint* configuration (voters
  V', `previous` V), in which every majority (a vote, a lease, an acknowledgement) must be a majority
  of V' and of V; once that is agreed it makes the *settled* one (voters V', previous V'). The voters
  of V that V' drops still vote while the configuration is joint; learners never do.
* **Agreed.** A leader changes the configuration only from a settled one that a majority
  acknowledged in its own epoch, and settles a joint one only once a majority of both acknowledged it
  there. So no two changes are ever in flight, and whatever a configuration's siblings or ancestors
  are, every pair of configurations that can still gather a majority shares a voter with every
  majority of the other (any two of them ask a majority of some common voters).
* **Learners.** A new member joins as a learner (hears heartbeats, counts for nothing, never stands)
  and the leader promotes it once it has acknowledged the settled configuration that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


def configuration_id(
    members: tuple[int, ...] | list[int],
    learners: tuple[int, ...] = (),
    index: int = 0,
    term: int = 0,
    previous: tuple[int, ...] = (),
    notify: tuple[int, ...] = (),
) -> int:
    """A fingerprint of a configuration (32-bit FNV-1a, never 0); of the initial list alone, it is the
    fingerprint of its sorted ids. Shown by status and in refusals ("we run 3f2a…")."""
    text = ",".join(map(str, sorted(members)))
    if learners or index or term:
        text += "|" + ",".join(map(str, sorted(learners))) + f"|{index}|{term}"
    if previous and tuple(sorted(previous)) != tuple(sorted(members)) or notify:
        text += "|" + ",".join(map(str, sorted(previous))) + "|" + ",".join(map(str, sorted(notify)))
    return _fnv1a(text)


@lru_cache(maxsize=256)
def _fnv1a(text: str) -> int:
    """Cached: every peer message and every ack carries a fingerprint that is checked (a byte loop in
    Python, per heartbeat), and a cluster runs few configurations."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h or 1


# How many removed nodes a configuration keeps telling (the highest ids: the most recently added).
MAX_NOTIFY = 32


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
    # Joint: the voters of the configuration this one changes, whose majority every count needs too;
    # settled: `voters` again (the default).
    previous: tuple[int, ...] = ()
    # Nodes changes took out (voters or learners), the latest MAX_NOTIFY: still told, so that they hear
    # their removal even if they missed the change that removed them (a node in no configuration
    # answers only `not-a-member`).
    notify: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", tuple(sorted(self.voters)))
        object.__setattr__(self, "learners", tuple(sorted(self.learners)))
        object.__setattr__(self, "previous", tuple(sorted(self.previous or self.voters)))
        object.__setattr__(self, "notify", tuple(sorted(self.notify)))
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
        return configuration_id(self.voters, self.learners, self.index, self.term, self.previous, self.notify)

    @property
    def everyone(self) -> tuple[int, ...]:
        """Who is in the configuration: its voters and learners (the nodes that follow its leader)."""
        return tuple(sorted(self.voters + self.learners))

    @property
    def joint(self) -> bool:
        return self.previous != self.voters

    @property
    def electorate(self) -> tuple[int, ...]:
        """Who votes and acknowledges: the voters, and while joint the voters before too."""
        return tuple(sorted(set(self.voters + self.previous)))

    @property
    def participants(self) -> tuple[int, ...]:
        """Who takes part: everyone in it, and while joint the voters before (they still vote)."""
        return tuple(sorted(set(self.everyone + self.previous)))

    @property
    def audience(self) -> tuple[int, ...]:
        """Whom its nodes talk to: everyone in it, the voters before, and the nodes just taken out."""
        return tuple(sorted(set(self.voters + self.learners + self.previous + self.notify)))

    def majority(self, ids: set[int] | frozenset[int]) -> bool:
        """`ids` hold a majority of the voters, and while joint of the voters before too."""
        return all(2 * len(ids & set(group)) > len(group) for group in {self.voters, self.previous})

    def majority_lost(self, refused: set[int] | frozenset[int]) -> bool:
        """So many of `refused` that no majority can be had any more (of either group while joint)."""
        return any(2 * len(refused & set(group)) >= len(group) for group in {self.voters, self.previous})

    def describe(self) -> str:
        learners = f", learners {','.join(map(str, self.learners))}" if self.learners else ""
        joint = f", joint with voters {','.join(map(str, self.previous))}" if self.joint else ""
        return (
            f"configuration {self.index} of term {self.term} (voters {','.join(map(str, self.voters))}"
            f"{learners}{joint})"
        )

    def compare(self, other: Membership) -> str:
        """'' when the same, 'later' when `other` comes after this one, else the refusal reason."""
        if other.order > self.order:
            return "later"
        if other.order < self.order:
            return STALE
        return "" if other == self else CONFLICT

    def changed(self, voters: tuple[int, ...], learners: tuple[int, ...], term: int) -> Membership:
        """The next configuration, made by the leader of epoch `term` from a settled one: at most one
        voter added or removed, joint with the voters before when they change. Raises MembershipRefused
        with the reason otherwise."""
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
                "voter; change one member at a time"
            )
        if voters == self.voters and learners == self.learners:
            raise MembershipRefused(f"{self.describe()} already")
        if self.joint:
            raise MembershipRefused(f"{self.describe()} is joint: it settles first")
        gone = set(self.everyone) - set(voters) - set(learners)
        told = sorted((gone | set(self.notify)) - set(voters) - set(learners))[-MAX_NOTIFY:]
        return Membership(voters, learners, self.index + 1, term, previous=self.voters, notify=tuple(told))

    def settled(self, term: int) -> Membership:
        """A joint configuration's second step, by the leader of epoch `term`: the new voters alone."""
        return Membership(self.voters, self.learners, self.index + 1, term, previous=self.voters, notify=self.notify)


def initial(members: tuple[int, ...]) -> Membership:
    """The configuration a node starts with before it has heard of any change: its --peers list."""
    return Membership(tuple(members))


def joining() -> Membership:
    """A node started to join a running cluster: in no configuration yet (it backs no one and never
    stands), ordered before every configuration a cluster runs, so it adopts the first it hears."""
    return Membership((), (), index=0, term=-1)
