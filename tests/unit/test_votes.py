"""Vote counting is a pure function: a table test, as etcd-io/raft has for its quorum code."""

from __future__ import annotations

import pytest

from node.core.votes import has_majority, majority, majority_impossible

# n -> the smallest majority
MAJORITY = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4}


@pytest.mark.parametrize("n, expected", sorted(MAJORITY.items()))
def test_majority(n: int, expected: int) -> None:
    assert majority(n) == expected
    # Any two majorities share a member; one fewer would let two disjoint sets both win.
    assert 2 * majority(n) > n
    assert 2 * (majority(n) - 1) <= n


@pytest.mark.parametrize("n", sorted(MAJORITY))
def test_has_majority(n: int) -> None:
    for granted in range(n + 1):
        assert has_majority(set(range(1, granted + 1)), n) == (granted >= MAJORITY[n]), (n, granted)


@pytest.mark.parametrize("n", sorted(MAJORITY))
def test_majority_impossible(n: int) -> None:
    for refused in range(n + 1):
        # Impossible exactly when the nodes that did not refuse are fewer than a majority.
        assert majority_impossible(set(range(1, refused + 1)), n) == (n - refused < MAJORITY[n]), (n, refused)


@pytest.mark.parametrize("n", sorted(MAJORITY))
def test_never_both_won_and_lost(n: int) -> None:
    """A split of the cluster into granted and refused is decided one way only."""
    for granted in range(n + 1):
        yes, no = set(range(granted)), set(range(granted, n))
        assert not (has_majority(yes, n) and majority_impossible(no, n))
        assert has_majority(yes, n) or majority_impossible(no, n)


@pytest.mark.parametrize("n", [0, -1])
def test_majority_rejects_empty_cluster(n: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        majority(n)
