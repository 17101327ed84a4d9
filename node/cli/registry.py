"""The registry the `bullyproof` parser is assembled from: one `Command` per subcommand.

Each part of the CLI (node/cli/*.py) lists its commands as `Command` values (name, help, the
arguments it takes, the function that runs it); `assemble` builds the one top parser from them, in
the order given. A `Delegated` command hands its arguments, whole, to another part's own parser
(chaos/, node/sim, bench/, the store): that part is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """`bullyproof NAME`: its help line, its arguments, and what runs it (returns the exit status)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    description: str | None = None

    def register(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        extra: dict[str, Any] = {"description": self.description} if self.description else {}
        p = sub.add_parser(self.name, help=self.help, **extra)
        self.add_arguments(p)
        p.set_defaults(run=self.run)
        return p


@dataclass(frozen=True)
class Delegated:
    """`bullyproof NAME ...`: every argument after NAME goes to `main` (that part's own parser;
    `parser` builds it, for the documentation's checks), imported only when it runs."""

    name: str
    help: str
    main: Callable[[list[str]], int]
    parser: Callable[[], argparse.ArgumentParser] = field(compare=False)

    def register(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        p = sub.add_parser(self.name, help=self.help, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)  # never parsed here: main() hands it on first
        return p


def assemble(prog: str, description: str | None, commands: Sequence[Command | Delegated]) -> argparse.ArgumentParser:
    """The top parser: one subcommand per entry of `commands`, in that order."""
    names = [c.name for c in commands]
    if len(set(names)) != len(names):
        raise ValueError(f"two commands share a name: {sorted(n for n in names if names.count(n) > 1)}")
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        command.register(sub)
    return parser
