"""A page of the store's log must fit in a reply its readers can take.

ReadLog returns up to `limit` entries (the chaos harness and the dashboard ask for 5,000) whatever
their size, and any caller can write values of up to 64 KiB, refused writes included (every attempt
is logged). 120 such writes make the page from the start about 7.8 MB: past gRPC's default 4 MiB
receive limit, so the harness and the dashboard get RESOURCE_EXHAUSTED on every read and never get
past it; a limit of 10,000 made the store build a 640 MB reply. node/store/db.py now caps a page by
bytes as well (1 MiB, always at least one entry), so readers paging by after_seq make progress.
"""

from __future__ import annotations

import grpc
import pytest

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def test_a_log_of_large_values_can_still_be_read_page_by_page(fuzz_store):
    with grpc.insecure_channel(fuzz_store.address) as ch:  # gRPC's default limits, as the harness's channel
        stub = pb_grpc.FencedStoreStub(ch)
        for i in range(120):
            stub.Write(pb.WriteRequest(writer_id=1, epoch=1 + i % 2, key=f"k{i}", value=b"v" * 65_000), timeout=5)
        seen, after = 0, 0
        while True:
            page = stub.ReadLog(pb.ReadLogRequest(after_seq=after, limit=5000), timeout=10)
            if not page.entries:
                break
            seen += len(page.entries)
            after = page.entries[-1].seq
    assert seen == 120
