"""Settings that would break the lease rule are refused with a message that says what to change."""

from __future__ import annotations

import dataclasses

import pytest

from node.config import ConfigError, check_timings
from node.core import CLOCK_DRIFT_BOUND


def test_a_timing_whose_ticks_leave_too_little_drift_margin_is_refused() -> None:
    # 160 ms in 10 ms ticks: lease 11, promise 12 ticks, safe only under 4.3% clock drift.
    with pytest.raises(ConfigError, match=r"drift less than 4\.3% \(need 5%\).*smaller --tick-ms"):
        check_timings(50, 160, 10)
    assert check_timings(50, 160, 5).drift_margin >= CLOCK_DRIFT_BOUND  # finer ticks fix it


@pytest.mark.parametrize(
    "heartbeat_ms, election_timeout_ms, tick_ms",
    [(100, 500, 10), (100, 1000, 10), (50, 500, 10), (1000, 3000, 10), (100, 500, 100)],
)
def test_the_documented_timings_keep_the_margin(heartbeat_ms: int, election_timeout_ms: int, tick_ms: int) -> None:
    assert check_timings(heartbeat_ms, election_timeout_ms, tick_ms).drift_margin >= CLOCK_DRIFT_BOUND


def test_a_mode_option_the_mode_does_not_take_is_refused_by_name() -> None:
    from node.launcher.cluster import local_spec

    spec = local_spec(3, "raft")
    assert "--mode-option" not in spec.node_args(spec.nodes[0], "/s", None)
    spec = dataclasses.replace(spec, mode_options=("no-pre-vote",))
    args = spec.node_args(spec.nodes[0], "/s", None)
    assert args[args.index("--mode-option") + 1] == "no-pre-vote"
    with pytest.raises(ConfigError, match=r"--mode-option: mode quorum has no option 'no-pre-vote' \(it takes: none\)"):
        dataclasses.replace(spec, mode="quorum")


def test_an_election_timeout_whose_lease_peers_would_refuse_is_refused_first() -> None:
    from node.config import MAX_ELECTION_TIMEOUT_MS
    from node.runtime.wire import MAX_LEASE_MS

    longest = check_timings(1000, MAX_ELECTION_TIMEOUT_MS, 10)
    assert longest.leader_lease_ticks * 10 <= MAX_LEASE_MS  # the longest accepted lease is one peers take
    with pytest.raises(ConfigError, match="10 minutes"):
        check_timings(1000, MAX_ELECTION_TIMEOUT_MS + 1, 10)


def _settings(**changes):
    from pathlib import Path

    from node.config import NodeSettings
    from node.core import Mode

    fields = dict(
        node_id=4,
        peer_listen="127.0.0.1:0",
        client_listen="127.0.0.1:0",
        peers={},
        mode=Mode("quorum"),
        state_dir=Path("/nonexistent"),
        peer_address_template="pod-{ordinal}.svc:7000",
        client_address_template="pod-{ordinal}.svc:7100",
        voters=(1, 2, 3),
        self_join=True,
    )
    fields.update(changes)
    return NodeSettings(**fields)


def test_members_found_by_their_ids_under_an_address_template() -> None:
    """A StatefulSet's pod NAME-N is node N+1: {ordinal} is the id - 1, {id} the id; --peers wins."""
    s = _settings(peers={2: "10.0.0.2:7000"})
    assert (s.peer_address(1), s.peer_address(2), s.peer_address(9)) == (
        "pod-0.svc:7000",
        "10.0.0.2:7000",
        "pod-8.svc:7000",
    )
    assert s.peer_address(4) is None and s.client_address(5) == "pod-4.svc:7100"
    assert s.open_membership and s.knows(25) and not s.knows(0)
    closed = _settings(
        peers={1: "a:1", 2: "b:1", 3: "c:1"},
        peer_address_template=None,
        client_address_template=None,
        self_join=False,
        voters=(),
        node_id=3,
        join=False,
    )
    assert closed.peer_address(9) is None and not closed.knows(9) and not closed.open_membership


def test_a_self_joining_node_not_in_voters_starts_outside_and_one_in_them_inside() -> None:
    assert _settings().starts_outside  # node 4, voters 1,2,3: a pod the StatefulSet was scaled up to
    assert not _settings(node_id=2).starts_outside and _settings(node_id=2).initial_voters == (1, 2, 3)
    assert _settings(self_join=False, voters=(), join=True).starts_outside


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"peer_address_template": "pod.svc:7000"}, "names no node: put {id}"),
        ({"peer_address_template": "pod-{ordinal}.svc:{port}"}, "only {id} and {ordinal} are replaced"),
        ({"client_address_template": "pod-{id}.svc"}, "is not HOST:PORT"),
        ({"client_address_template": None}, "--self-join asks the leader at its client address"),
        ({"self_join": False}, "--voters must include this node (4)"),
        ({"voters": ()}, "--peer-address-template without --peers: give --voters"),
        (
            {"mode": "ring", "voters": (), "self_join": False, "client_address_template": None, "peers": {1: "a:1"}},
            "--peer-address-template needs a mode that changes membership",
        ),
        (
            {"peer_address_template": None, "client_address_template": None, "self_join": False, "voters": ()},
            "--peers is empty",
        ),
    ],
)
def test_address_templates_and_self_join_are_refused_where_they_cannot_work(changes, words) -> None:
    from node.core import Mode

    if "mode" in changes:
        changes = {**changes, "mode": Mode(changes["mode"])}
    with pytest.raises(ConfigError) as refused:
        _settings(**changes)
    assert words in str(refused.value)
