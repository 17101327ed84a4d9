"""Vote counting, kept apart so it has its own table test (as etcd-io/raft does)."""

from __future__ import annotations

from collections.abc import Collection


def majority(cluster_size: int) -> int:
    """Smallest number of nodes that any two such sets must share one of."""
    if cluster_size <= 0:
        raise ValueError(f"cluster size must be positive, got {cluster_size}")
    return cluster_size // 2 + 1


def has_majority(granted_by: Collection[int], cluster_size: int) -> bool:
    return len(granted_by) >= majority(cluster_size)


def majority_impossible(refused_by: Collection[int], cluster_size: int) -> bool:
    """True once so many refused that the rest could not make a majority even if all granted."""
    return cluster_size - len(refused_by) < majority(cluster_size)
