"""The `bullyproof` parser is assembled from the CLI package's registry (node/cli), and its timing
flags read the one default timing (node.timing.DEFAULT_TIMING)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from node.cli import COMMANDS, DELEGATED, build_parser
from node.cli.registry import Command, Delegated, assemble
from node.timing import DEFAULT_TIMING


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_parser_lists_every_registered_command_in_order() -> None:
    assert list(subcommands(build_parser())) == [c.name for c in COMMANDS]
    assert set(DELEGATED) == {"store", "chaos", "fence", "showdown", "bench", "sim"}


def test_two_commands_may_not_share_a_name() -> None:
    twice = [Command("x", "one", lambda a: 0), Delegated("x", "two", lambda argv: 0, argparse.ArgumentParser)]
    try:
        assemble("t", None, twice)
    except ValueError as exc:
        assert "x" in str(exc)
    else:
        raise AssertionError("a name registered twice was accepted")


def test_building_the_parser_loads_no_upper_part() -> None:
    """`bullyproof node` parses its flags without importing chaos/, bench/ or dashboard/."""
    code = (
        "import sys; from node.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'chaos', 'bench', 'dashboard'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_timing_flags_default_to_the_one_default_timing() -> None:
    parsers = subcommands(build_parser())
    node = parsers["node"].parse_args(["--id", "1", "--listen", "a:1", "--client-listen", "a:2", "--state-dir", "s"])
    assert (node.heartbeat_interval_ms, node.election_timeout_ms, node.tick_ms) == (
        DEFAULT_TIMING.heartbeat_interval_ms,
        DEFAULT_TIMING.election_timeout_ms,
        DEFAULT_TIMING.tick_ms,
    )
    assert (node.preempt_hold_down_ms, node.write_period_ms) == (
        DEFAULT_TIMING.preempt_hold_down_ms,
        DEFAULT_TIMING.write_period_ms,
    )
    help_text = parsers["node"].format_help()
    assert f"(default {DEFAULT_TIMING.heartbeat_interval_ms})" in help_text
    assert f"(default {DEFAULT_TIMING.election_timeout_ms})" in help_text
