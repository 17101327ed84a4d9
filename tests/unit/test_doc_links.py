"""Every relative link in README.md and docs/*.md leads somewhere: to a file that exists and, with a
`#anchor`, to a heading of that file, slugged as GitHub slugs headings (lowercase; punctuation other
than - and _ dropped; each space a -; a repeated heading gets -1, -2, ...). A page moved or a heading
renamed then fails here instead of in a reader's browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+).*?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening[1]
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
        else:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading reads as its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path):
        if m := HEADING.match(line):
            base = slug(m[1])
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link, also one whose text runs over a line break."""
    out: list[tuple[int, str]] = []
    paragraph: list[tuple[int, str]] = []
    for number, line in [*prose_lines(path), (0, "")]:
        if line.strip():
            paragraph.append((number, INLINE_CODE.sub("", line)))
            continue
        text, starts = "", []
        for n, part in paragraph:
            starts.append((len(text), n))
            text += part + " "
        for m in LINK.finditer(text):
            out.append((max(n for offset, n in starts if offset <= m.start()), m[1]))
        paragraph = []
    return out


def test_slugs_follow_githubs_rules() -> None:
    assert (
        slug("7. How we know it is safe (added after 15,000 schedules)")
        == "7-how-we-know-it-is-safe-added-after-15000-schedules"
    )
    assert slug("Break it: chaos") == "break-it-chaos"
    assert slug("Exhaustive at small scope: `bullyproof sim check`") == "exhaustive-at-small-scope-bullyproof-sim-check"
    assert (
        slug("Kubernetes: scaling the StatefulSet (quorum and raft)")
        == "kubernetes-scaling-the-statefulset-quorum-and-raft"
    )
    assert slug("node_args and -- dashes") == "node_args-and----dashes"


def test_links_are_found() -> None:
    found = {str(p.relative_to(ROOT)): links(p) for p in DOC_FILES}
    assert found["README.md"], "no link found in README.md: is the extraction broken?"


def broken_links(doc: Path) -> list[str]:
    broken = []
    for number, target in links(doc):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        where = f"{doc.name}:{number}: ({target})"
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{where}: no file {file_part}")
        elif anchor and dest.suffix != ".md":
            broken.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(dest):
            broken.append(f"{where}: no heading #{anchor} in {dest.name}")
    return broken


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Part: two\n\n## Part: two\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n[ok](other.md#part-two-1), [self](#doc), [web](https://example.org/x#y)\n"
        "[gone](missing.md) and [no heading](other.md#part-three) and [here](#nowhere), [over a\n"
        "line break](missing.md)\n"
        "```sh\n[in code](missing.md)\n```\n`[inline](missing.md)`\n"
    )
    assert broken_links(doc) == [
        "doc.md:4: (missing.md): no file missing.md",
        "doc.md:4: (other.md#part-three): no heading #part-three in other.md",
        "doc.md:4: (#nowhere): no heading #nowhere in doc.md",
        "doc.md:4: (missing.md): no file missing.md",
    ]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = broken_links(doc)
    assert not broken, "\n".join(broken)
