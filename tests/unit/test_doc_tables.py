"""The explorer's power tables in docs/explorer.md say what the tests hold: each planted bug's first
failing schedule (seed 0) is test_sim_properties' FIRST_FAILING, and the bugs marked "not found" are its
NOT_FOUND_YET. A new measurement then changes both, or this fails."""

from __future__ import annotations

import re
from pathlib import Path

from test_sim_properties import FIRST_FAILING, NOT_FOUND_YET

ROOT = Path(__file__).resolve().parents[2]
EXPLORER = ROOT / "docs" / "explorer.md"


def rows(header: str) -> list[list[str]]:
    """The cells of each row of the table whose header row starts with `header`."""
    lines = EXPLORER.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    out = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        out.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return out


def bug_name(cell: str) -> str:
    return re.match(r"`([a-z-]+)`", cell)[1]


def documented() -> tuple[dict[tuple[str, str], int], set[str]]:
    first: dict[tuple[str, str], int] = {}
    not_found: set[str] = set()
    for cells in rows("planted bug"):
        bug, found = bug_name(cells[0]), cells[2]
        first["quorum", bug] = int(re.match(r"\d+", found)[0])
        if raft := re.search(r"\(raft: (\d+)\)", found):
            first["raft", bug] = int(raft[1])
    for cells in rows("independent bug"):
        bug, mode, found = bug_name(cells[0]), cells[1], cells[-1]
        if found == "not found":
            not_found.add(bug)
        else:
            first[mode, bug] = int(found.replace(",", ""))
    return first, not_found


def test_the_power_tables_say_what_the_tests_hold() -> None:
    first, not_found = documented()
    assert first == FIRST_FAILING
    assert not_found == NOT_FOUND_YET
