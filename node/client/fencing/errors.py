"""What a fenced write raises when the resource refuses it. No imports from the rest of the SDK, so
node.client.sdk can raise the same types (FencedWriter is the fenced store's adapter)."""

from __future__ import annotations


class FencingRefused(Exception):
    """The resource refused a write: its epoch is no longer current there. Stop acting as leader.

    Nothing of the write was applied: not your statements, not the fence record. `highest_epoch` and
    `owner_id` are what the resource held when it refused (owner_id None when the resource does not
    say, as the fenced store does not); `seq` is the fenced store's log position of the refused attempt
    (None elsewhere). `Fenced` is another name for this class.
    """

    def __init__(
        self,
        epoch: int,
        highest_epoch: int,
        reason: str,
        seq: int | None = None,
        *,
        resource: str | None = None,
        writer_id: int | None = None,
        owner_id: int | None = None,
    ) -> None:
        where = f"{resource!r}: " if resource is not None else ""
        super().__init__(f"{where}write with epoch {epoch} refused: {reason} (highest accepted epoch: {highest_epoch})")
        self.epoch = epoch
        self.highest_epoch = highest_epoch
        self.reason = reason
        self.seq = seq
        self.resource = resource
        self.writer_id = writer_id
        self.owner_id = owner_id


class StaleEpoch(FencingRefused):
    """The epoch is below the highest the resource accepted: a newer leader has written there."""


class EpochTaken(FencingRefused):
    """The epoch is the highest the resource accepted, but another writer claimed it first."""
