"""The cluster's own fenced store (`bullyproof store`) behind the same interface as the other fences.

Its rule is the same, decided in the store process (node.store.db.decide); two differences: it keeps
one highest epoch for all keys, not one per resource (an epoch accepted for one key fences every
other key too: stricter, never looser), and a write is only a key and a value, so there is no
transaction for your own statements. `read` pages through the store's log, and `read_log` returns its
accepted writes (the store always keeps its log; `write` returns the write's seq in it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import client_channel
from node.client.fencing.base import (
    NEVER_WRITTEN,
    AcceptedWrite,
    FenceBug,
    FenceState,
    check_claim,
    check_read_log,
    planted_bugs,
)
from node.client.sdk import FencedWriter, LeaseToken, parse_addresses
from node.tls import STORE_NAME, Tls


class StoreFence:
    """Writes to a fenced store at `address` (HOST:PORT). With `certs` (the cluster's certificate
    directory) it writes as writer N with node-N's certificate, as the store requires, and reads the
    log as the cluster's admin; `insecure=True` for a store started with --insecure."""

    def __init__(
        self,
        address: str,
        *,
        certs: str | Path | None = None,
        insecure: bool = False,
        deadline_s: float = 1.0,
        _planted: Iterable[FenceBug | str] = (),
    ) -> None:
        if planted_bugs(_planted):
            raise ValueError("the fenced store's rule is in the store process: plant its bugs there (--planted-bug)")
        if (certs is None) == (not insecure):
            raise ValueError("give certs=DIR (the cluster's certificates) or insecure=True, not both or neither")
        (self.address,) = parse_addresses([address])
        self.certs = None if certs is None else Path(certs)
        self.deadline_s = deadline_s
        self._writers: dict[int, FencedWriter] = {}
        self._reader = None

    def __repr__(self) -> str:
        return f"StoreFence({self.address!r})"

    def _tls(self, holder: str) -> Tls | None:
        return None if self.certs is None else Tls.in_dir(self.certs, holder)

    async def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int:
        """Write value under key `resource`; StaleEpoch or EpochTaken if the store refuses the epoch.
        Returns the write's seq in the store's log."""
        check_claim(resource, writer_id, epoch)
        writer = self._writers.get(writer_id)
        if writer is None:
            tls = self._tls(f"node-{writer_id}")
            writer = self._writers[writer_id] = FencedWriter(
                self.address, writer_id, self.deadline_s, tls=tls, insecure=tls is None
            )
        return (await writer.write(LeaseToken(writer_id, epoch), resource, bytes(value))).seq

    def _log_stub(self) -> pb_grpc.FencedStoreStub:
        if self._reader is None:
            self._reader = client_channel(self.address, self._tls("admin"), STORE_NAME)
        return pb_grpc.FencedStoreStub(self._reader)

    async def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        """The store log's accepted writes with seq above `after_seq` (refused ones are left out), in seq
        order, at most `limit` of them; `resource` is the key."""
        check_read_log(after_seq, limit)
        stub, found = self._log_stub(), []
        while len(found) < limit:
            reply = await stub.ReadLog(pb.ReadLogRequest(after_seq=after_seq, limit=10_000), timeout=self.deadline_s)
            if not reply.entries:
                break
            found += [
                AcceptedWrite(e.seq, e.key, e.epoch, e.writer_id, bytes(e.value), e.recorded_unix_ns)
                for e in reply.entries
                if e.accepted
            ]
            after_seq = reply.entries[-1].seq
        return found[:limit]

    async def read(self, resource: str) -> FenceState:
        """The last accepted write to key `resource`: its epoch, writer and value."""
        stub = self._log_stub()
        state, after = NEVER_WRITTEN, 0
        while True:
            reply = await stub.ReadLog(pb.ReadLogRequest(after_seq=after, limit=10_000), timeout=self.deadline_s)
            for entry in reply.entries:
                if entry.accepted and entry.key == resource:
                    state = FenceState(entry.epoch, entry.writer_id, bytes(entry.value))
            if not reply.entries:
                return state
            after = reply.entries[-1].seq

    async def close(self) -> None:
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            await writer.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
