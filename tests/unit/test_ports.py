"""Port slices: workers of one run never share one, and every port handed out is bindable."""

from __future__ import annotations

import socket

from node.launcher import ports


def slice_for(monkeypatch, worker: str, count: int, uid: str) -> tuple[int, int]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", uid)
    monkeypatch.delenv(ports.RANGE_ENV, raising=False)
    return ports.port_range()


def test_workers_of_one_run_get_disjoint_slices_below_the_ephemeral_range(monkeypatch):
    for count in (1, 2, 4, 8):
        for uid in ("a", "b", "c"):
            slices = [slice_for(monkeypatch, f"gw{i}", count, uid) for i in range(count)]
            assert len(set(slices)) == count
            assert all(ports.BASE_PORT + ports.SLICE_PORTS <= lo and hi <= 32768 for lo, hi in slices)


def test_without_xdist_the_cli_slot_is_used(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv(ports.RANGE_ENV, raising=False)
    assert ports.port_range() == (ports.BASE_PORT, ports.BASE_PORT + ports.SLICE_PORTS)


def test_free_ports_are_distinct_and_bindable(monkeypatch):
    monkeypatch.setenv(ports.RANGE_ENV, "30000-30100")
    handed = [ports.free_port() for _ in range(20)]
    assert len(set(handed)) == 20 and all(30000 <= p < 30100 for p in handed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", handed[-1]))
