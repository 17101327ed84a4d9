"""Every code block of README.md and docs/*.md, run or checked against a real cluster, so a documented
command or example cannot drift from the code.

* ```python blocks run against a real local cluster (3 nodes, mutual TLS, started as `cluster up
  --direct` starts one) in `runs/local` under the test's working directory, so an example finds it
  where it finds `make cluster`'s. The blocks of one file run in order in one namespace, compiled
  as `python -m asyncio` compiles (top-level `await`), as a reader pasting them into one session
  would run them. A block must finish without an exception within BLOCK_TIMEOUT_S. A marker on the
  line before the fence changes that (keep them rare):
    <!-- docs-test: runs until cancelled -->  the block loops forever by design (a watch, a leader's
        work): it is cancelled once every one of its statements has run, and must get there without
        an exception within BLOCK_TIMEOUT_S (the SDK examples of a watch and of a leader's job);
    <!-- docs-test: fragment -->  compiled only (for a piece that cannot run on its own).
* ```sh / ```bash / ```shell / ```console blocks: every `bullyproof ...` is parsed by the CLI's own
  argparse parsers (the top-level one, or the one of the module a subcommand hands its arguments to);
  the read-only ones (READ_ONLY) also run against the test cluster, and those that only write files
  (WRITES_FILES) in a scratch directory; both must exit 0. Other commands get the cheap checks of
  `check_other` (make targets exist, `python -m` modules are found, files exist,
  grpcurl's methods exist and their -d parses, compose services exist); the rest is listed as
  unchecked in the test's output.
* Plain ``` blocks show output and are left alone.

Every failure names the block's file:line.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pool, json_format, message_factory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
AGREE_TIMEOUT_S = 30.0
BLOCK_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 60.0

FRAGMENT = "fragment"
UNTIL_CANCELLED = "runs until cancelled"
MARKERS = (FRAGMENT, UNTIL_CANCELLED)
MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
SHELL_LANGS = {"sh", "bash", "shell", "console", "zsh"}

# `bullyproof X` commands that run here (against the test cluster) because they change nothing.
READ_ONLY = {("leader",), ("status",), ("health",), ("metrics",), ("chaos", "list")}
# ... and these, which only write files, run in a scratch directory (in the docs' order: `certs install`
# copies what `certs init` made).
WRITES_FILES = {("certs",), ("k8s",), ("compose",)}


# ---- the blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first line of code
    lang: str
    text: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the docs-test marker on the line before its fence."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip()
        before = lines[i - 1] if i > 0 else ""
        marker = MARKER.search(before)
        start = i + 1
        i = start
        closing = re.compile(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*")
        while i < len(lines) and not closing.fullmatch(lines[i]):
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start}: code fence opened here is never closed")
        body = [
            line[len(opening["indent"]) :] if line.startswith(opening["indent"]) else line for line in lines[start:i]
        ]
        blocks.append(
            Block(
                path,
                start + 1,
                info.split()[0].lower() if info else "",
                "\n".join(body) + "\n",
                marker[1] if marker else None,
            )
        )
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in read_blocks(path)]


def python_docs() -> list[Path]:
    return [path for path in DOC_FILES if any(b.lang in ("python", "py") for b in read_blocks(path))]


# ---- shell lines ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str  # the line as written
    argv: list[str]  # one command of it, variables expanded


SEPARATORS = {";", "&&", "||", "|", "&"}
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def commands(block: Block) -> list[Command]:
    """The commands of a shell block, line by line (continuations joined, comments dropped): a line
    with ; && || | & is several; NAME=value sets a variable the later lines of the block expand."""
    out: list[Command] = []
    env: dict[str, str] = {}
    logical: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, raw in enumerate(block.text.splitlines()):
        if block.lang == "console":
            if not raw.startswith("$ "):
                continue  # output
            raw = raw[2:]
        number, text = pending if pending else (block.line + offset, "")
        text += raw
        if text.endswith("\\"):
            pending = (number, text[:-1] + " ")
            continue
        pending = None
        logical.append((number, text))

    def expand(word: str) -> list[str]:
        value = VARIABLE.sub(lambda m: env.get(m[1] or m[2], m[0]), word)
        return value.split() if VARIABLE.fullmatch(word) else [value]  # an unquoted $VAR is split into words

    for number, text in logical:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:
            out.append(Command(f"{block.path.relative_to(ROOT)}:{number}", text.strip(), ["<unparsable>", str(exc)]))
            continue
        groups: list[list[str]] = [[]]
        for token in tokens:
            if token in SEPARATORS:
                groups.append([])
            else:
                groups[-1].append(token)
        for words in filter(None, groups):
            while words and re.fullmatch(r"\w+=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = " ".join(expand(value))
            argv = [w for word in words for w in expand(word)]
            if argv:
                out.append(Command(f"{block.path.relative_to(ROOT)}:{number}", text.strip(), argv))
    return out


def shell_commands() -> list[Command]:
    return [c for b in all_blocks() if b.lang in SHELL_LANGS for c in commands(b)]


def program(cmd: Command) -> str:
    return Path(cmd.argv[0]).name


# ---- the CLI's parsers ----------------------------------------------------------------------------


def delegated_parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    """The subcommands whose arguments node.cli.main hands, whole, to another module's parser."""
    from bench.versus import build_parser as bench_parser
    from chaos.cli import build_fence_parser as fence_parser
    from chaos.cli import build_parser as chaos_parser
    from chaos.showdown import build_parser as showdown_parser
    from node.sim.cli import build_parser as sim_parser
    from node.store.server import build_parser as store_parser

    return {
        "store": store_parser,
        "chaos": chaos_parser,
        "fence": fence_parser,
        "showdown": showdown_parser,
        "bench": bench_parser,
        "sim": sim_parser,
    }


def subcommands_taking_the_rest(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name for name, p in sub.choices.items() if any(a.nargs == argparse.REMAINDER for a in p._actions)}


def parse_error(args: list[str]) -> str | None:
    """None if the bullyproof CLI's parsers accept `bullyproof ARGS`, else what argparse said."""
    from node.cli import build_parser

    err = io.StringIO()
    delegated = delegated_parsers()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if args[:1] and args[0] in delegated:  # as node.cli.main: that parser gets the rest, whole
                delegated[args[0]]().parse_args(args[1:])
            else:
                build_parser().parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
    return None


# ---- the cluster the examples run against ---------------------------------------------------------


@dataclass
class DocsCluster:
    cwd: Path  # runs/local below it is the cluster's directory, where the examples look
    chaos: Any  # chaos.harness.ChaosCluster
    data: dict[str, Any] = field(default_factory=dict)  # its cluster.json

    def client_addresses(self) -> set[str]:
        return {n["client_address"] for n in self.data["nodes"]}


@pytest.fixture(scope="module")
def docs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsCluster]:
    from chaos.harness import ChaosCluster
    from node.cli import DEFAULT_DIR
    from node.launcher.cluster import CLUSTER_FILE

    cwd = tmp_path_factory.mktemp("docs")
    # As `cluster up --direct` starts one (mutual TLS, certificates in runs/local/certs); 3 nodes are
    # enough for every example. No preemption: the Leadership example's node keeps what it is given.
    cc = ChaosCluster(cwd / DEFAULT_DIR, nodes=3, direct=True, preempt_hold_down_ms=0, scenario="docs")
    try:
        cc.start()
        cc.wait_for_leader(AGREE_TIMEOUT_S)
        yield DocsCluster(cwd, cc, json.loads((cc.directory / CLUSTER_FILE).read_text()))
    finally:
        cc.stop()


# ---- running Python blocks --------------------------------------------------------------------------


def statement_lines(block: Block) -> set[int]:
    return {node.lineno + block.line - 1 for node in ast.walk(ast.parse(block.text)) if isinstance(node, ast.stmt)}


def describe(exc: BaseException, block: Block) -> str:
    """Where in the Markdown file the exception came from, and what it says."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(block.path)]
    where = f"{block.path.relative_to(ROOT)}:{lines[-1]}" if lines else block.where
    return f"{where}: {type(exc).__name__}: {exc}"


async def run_block(block: Block, namespace: dict[str, Any]) -> str | None:
    """Run one block in the file's namespace; a failure message naming file:line, or None."""
    source = "\n" * (block.line - 1) + block.text  # line numbers in tracebacks are the Markdown file's
    try:
        code = compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        return f"{block.path.relative_to(ROOT)}:{exc.lineno}: does not compile: {exc.msg}"
    if block.marker == FRAGMENT:
        return None
    wanted = statement_lines(block)
    seen: set[int] = set()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != str(block.path):
            return None
        if event == "line":
            seen.add(frame.f_lineno)
        return tracer

    output = io.StringIO()
    previous = sys.gettrace()
    failure: str | None = None
    with contextlib.redirect_stdout(output):
        sys.settrace(tracer)
        try:
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                task = asyncio.ensure_future(result)
                deadline = time.monotonic() + BLOCK_TIMEOUT_S
                while not task.done() and time.monotonic() < deadline:
                    if block.marker == UNTIL_CANCELLED and wanted <= seen:
                        await asyncio.wait({task}, timeout=1.0)  # a moment for the last line's await to fail
                        break
                    await asyncio.wait({task}, timeout=0.05)
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
                    if block.marker != UNTIL_CANCELLED:
                        failure = (
                            f"{block.where}: did not finish within {BLOCK_TIMEOUT_S:.0f} s (if it runs forever "
                            f"by design, mark it <!-- docs-test: {UNTIL_CANCELLED} -->)"
                        )
                    elif missing := sorted(wanted - seen):
                        failure = (
                            f"{block.where}: cancelled after {BLOCK_TIMEOUT_S:.0f} s with lines {missing} never reached"
                        )
                elif not task.cancelled() and task.exception() is not None:
                    failure = describe(task.exception(), block)
                elif block.marker == UNTIL_CANCELLED:
                    failure = f"{block.where}: marked '{UNTIL_CANCELLED}', but it ended by itself"
        except Exception as exc:  # a block without top-level await raises here
            failure = describe(exc, block)
        finally:
            sys.settrace(previous)
    if failure and output.getvalue():
        failure += "\n    its output: " + output.getvalue()[-500:].strip().replace("\n", "\n    ")
    return failure


def run_python_blocks(blocks: list[Block]) -> list[str]:
    namespace: dict[str, Any] = {"__name__": "__main__", "asyncio": asyncio}  # as `python -m asyncio` has it

    async def session() -> list[str]:
        return [failure for block in blocks if (failure := await run_block(block, namespace))]

    return asyncio.run(session())


# ---- cheap checks of other commands -----------------------------------------------------------------


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))


def compose_services() -> set[str]:
    return set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def grpc_method(name: str) -> Any:
    import grpc_health.v1.health_pb2  # noqa: F401  (registers grpc.health.v1 in the default pool)

    import node.api.bullyproof_pb2  # noqa: F401

    service, _, method = name.rpartition("/")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]


def check_other(cmd: Command, cwd: Path) -> tuple[str | None, str | None]:
    """(failure, None) or (None, why it is not checked) or (None, None) for a line that checked out."""
    from node.cli import DEFAULT_DIR

    prog, args = program(cmd), cmd.argv[1:]
    positional = [a for a in args if not a.startswith("-")]
    if prog == "make":
        missing = [t for t in positional if t not in makefile_targets()]
        return (f"no Makefile target {missing}" if missing else None), None
    if prog in ("python", "python3"):
        if args[:1] == ["-m"] and len(args) > 1:
            try:
                found = importlib.util.find_spec(args[1]) is not None
            except ModuleNotFoundError:  # a parent package is missing
                found = False
            return (None if found else f"no module {args[1]}"), None
        return (None if positional and (ROOT / positional[0]).is_file() else f"no file {positional[:1]}"), None
    if prog == "bash" and positional:
        return (None if (ROOT / positional[0]).is_file() else f"no file {positional[0]}"), None
    if prog in ("docker", "docker-compose", "podman") and (prog == "docker-compose" or args[:1] == ["compose"]):
        words = [a for a in (args[1:] if args[:1] == ["compose"] else args) if not a.startswith("-")]
        unknown = [s for s in words[1:] if s not in compose_services()]
        if words[:1] and words[0] in ("up", "restart", "stop", "start", "kill", "logs", "rm", "pause", "unpause"):
            return (f"no compose service {unknown}" if unknown else None), None
        return None, None
    if prog == "grpcurl":
        problems = []
        for flag in ("-cacert", "-cert", "-key"):
            if flag in args:
                path = args[args.index(flag) + 1]
                if path.startswith(DEFAULT_DIR) and not (cwd / path).is_file():
                    problems.append(f"no file {path} in a cluster's directory")
        methods = [a for a in positional if re.fullmatch(r"\w+(\.\w+)+/\w+", a)]
        for name in methods:
            try:
                method = grpc_method(name)
            except KeyError:
                problems.append(f"no gRPC method {name}")
                continue
            if "-d" in args:
                try:
                    json_format.Parse(args[args.index("-d") + 1], message_factory.GetMessageClass(method.input_type)())
                except json_format.ParseError as exc:
                    problems.append(f"-d does not parse as {method.input_type.full_name}: {exc}")
        if not methods:
            problems.append("names no gRPC method (SERVICE/METHOD)")
        return ("; ".join(problems) or None), "checked, not run (its address is no test cluster's)"
    return None, f"not checked ({prog})"


# ---- the tests ----------------------------------------------------------------------------------------


def test_node_client_binds_every_name_it_exports():
    import node.client

    assert [n for n in node.client.__all__ if not hasattr(node.client, n)] == []


def test_markers_are_known_and_blocks_are_found():
    bad = [
        f"{b.where}: docs-test marker {b.marker!r}: known are {MARKERS}, on python blocks"
        for b in all_blocks()
        if b.marker is not None and (b.marker not in MARKERS or b.lang not in ("python", "py"))
    ]
    assert not bad, "\n".join(bad)
    assert shell_commands(), "found no shell commands in README.md and docs/: is the extraction broken?"


def test_every_delegating_subcommand_is_parsed_by_its_own_parser():
    from node.cli import build_parser

    unknown = subcommands_taking_the_rest(build_parser()) - set(delegated_parsers())
    assert not unknown, (
        f"bullyproof {sorted(unknown)} hand their arguments to another parser: add it to delegated_parsers()"
    )


def test_every_documented_bullyproof_command_parses():
    lines = [c for c in shell_commands() if program(c) == "bullyproof"]
    failures = [f"{c.where}: `{c.text}`: {error}" for c in lines if (error := parse_error(c.argv[1:]))]
    assert not failures, "the CLI refuses documented commands:\n" + "\n".join(failures)


# Environment variables the examples read their database's URL from, as a service would, and the
# fixture (tests/conftest.py) of the real server the test gives them.
DATABASE_ENV = {"DATABASE_URL": "postgres_url", "REDIS_URL": "redis_url"}


@pytest.mark.parametrize("doc", python_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_against_a_cluster(
    doc: Path, docs_cluster: DocsCluster, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
):
    blocks = [b for b in read_blocks(doc) if b.lang in ("python", "py")]
    for name, fixture in DATABASE_ENV.items():  # the fencing examples write to real PostgreSQL and Redis
        if any(name in b.text for b in blocks):
            monkeypatch.setenv(name, request.getfixturevalue(fixture))
    # The Leadership example runs its work beside node 1 only while node 1 leads: hand it node 1.
    leader, _ = docs_cluster.chaos.wait_for_leader(AGREE_TIMEOUT_S)
    if leader != 1:
        assert docs_cluster.chaos.transfer(1)[0] == 1
    monkeypatch.chdir(docs_cluster.cwd)
    failures = run_python_blocks(blocks)
    assert not failures, "\n".join(failures)


def test_shell_commands_run_or_check_out(docs_cluster: DocsCluster, tmp_path: Path):
    docs_cluster.chaos.wait_for_leader(AGREE_TIMEOUT_S)  # `bullyproof leader` exits 1 without agreement
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    failures: list[str] = []
    unchecked: list[str] = []
    ran = 0
    for cmd in shell_commands():
        args = cmd.argv[1:]
        if program(cmd) == "bullyproof":
            writes = any(tuple(args[: len(key)]) == key for key in WRITES_FILES)
            if not writes and not any(tuple(args[: len(key)]) == key for key in READ_ONLY):
                unchecked.append(f"{cmd.where}: `{cmd.text}`: parsed, not run (changes a cluster, or runs long)")
                continue
            if "--compose" in args:
                unchecked.append(f"{cmd.where}: `{cmd.text}`: parsed, not run (needs a compose cluster)")
                continue
            foreign = [  # HOST:PORT, and each of --nodes [ID=]HOST:PORT,...
                part
                for a in args
                for part in (p.rpartition("=")[2] for p in a.split(","))
                if re.fullmatch(r"[\w.-]+:\d+", part) and part not in docs_cluster.client_addresses()
            ]
            if foreign:
                unchecked.append(
                    f"{cmd.where}: `{cmd.text}`: parsed, not run ({foreign[0]} is no test cluster's address)"
                )
                continue
            proc = subprocess.run(
                [sys.executable, "-m", "node.cli", *args],
                env=env,
                capture_output=True,
                text=True,
                cwd=tmp_path if writes else docs_cluster.cwd,
                timeout=COMMAND_TIMEOUT_S,
            )
            ran += 1
            if proc.returncode != 0:
                said = (proc.stderr or proc.stdout).strip()[-400:]
                failures.append(f"{cmd.where}: `{cmd.text}` exited {proc.returncode}: {said}")
            continue
        failure, why_not = check_other(cmd, docs_cluster.cwd)
        if failure:
            failures.append(f"{cmd.where}: `{cmd.text}`: {failure}")
        if why_not:
            unchecked.append(f"{cmd.where}: `{cmd.text}`: {why_not}")
    print(f"ran {ran} bullyproof commands; not run or not checked:\n  " + "\n  ".join(unchecked))
    assert ran, "no read-only bullyproof command in the docs ran: is READ_ONLY out of date?"
    assert not failures, "\n".join(failures)
