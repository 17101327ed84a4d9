"""Fencing in Redis (redis-py): the check, your write and the claim in one Lua script, which Redis runs
with nothing else in between.

    fence = RedisFence("redis://127.0.0.1:6379/0")
    await token.fenced(fence).set("jobs/nightly", {"jobs:nightly:last-run": now})   # StaleEpoch, EpochTaken

The fence record of a resource is a hash, PREFIX + resource (default `bullyproof_fence:jobs/nightly`),
with fields epoch, writer and value. The script reads it, refuses a stale or taken epoch (nothing
written), runs your part (`set`'s keys, or your own Lua in `eval`), and writes the claim last, so a
Lua error in your part claims nothing. Redis does not undo what a script wrote before an error: write
your part so it fails before it writes, if it can fail. In Redis Cluster every key of one script must
be in one slot: give the resource and your keys one hash tag, e.g. resource "{job7}" and key "{job7}:x".

Scripts run by EVALSHA (the script's SHA-1), falling back to EVAL when the server does not have it
yet (a restart, SCRIPT FLUSH), which also caches it. Epochs are compared as decimal strings of equal
length first, so every epoch up to 2^63-1 compares exactly (Lua's numbers are doubles).

With `log=True` the script also appends each accepted claim to a log (default key bullyproof_fence_log,
a stream whose entry IDs are SEQ-0, and LOG:seq, its counter), after your part and before the claim;
`write` returns the entry's seq and `read_log` reads the log back (AcceptedWrite). Both keys are
passed to the script: in Redis Cluster they and every resource logged must share one hash tag.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from node.client.fencing.base import (
    NEVER_WRITTEN,
    AcceptedWrite,
    FenceBug,
    FenceState,
    Hook,
    check_claim,
    check_read_log,
    judge,
    log_name,
    no_log,
    planted_bugs,
    refused,
)

PREFIX = "bullyproof_fence:"

# KEYS[1]: the fence hash; ARGV[1..3]: writer, epoch, value ('' unless `write`); the user's part sees
# KEYS[2..] and ARGV[4..] as its own KEYS and ARGV. Logged: KEYS[2], KEYS[3] are the log and its
# counter and ARGV[4] the resource's name, and the user's part starts at KEYS[4] and ARGV[5].
_CHECK = """
local function below(a, b)  -- a < b for decimal strings without leading zeros
  if #a ~= #b then return #a < #b end
  return a < b
end
local current = redis.call('HMGET', KEYS[1], 'epoch', 'writer')
local highest, owner = current[1] or '0', current[2] or '0'
local writer, epoch = ARGV[1], ARGV[2]
"""
_STALE = "if below(epoch, highest) then return {'stale', highest, owner} end\n"
_STALE_OR_EQUAL = "if not below(highest, epoch) then return {'stale', highest, owner} end\n"  # planted
_TAKEN = "if epoch == highest and writer ~= owner then return {'taken', highest, owner} end\n"
_UNCHECKED = "local highest, owner = '0', '0'\n"  # planted: the check ran outside, in Python
_USER = """
local user_keys, user_args = {{}}, {{}}
for i = {first_key}, #KEYS do user_keys[i - {keys_before}] = KEYS[i] end
for i = {first_arg}, #ARGV do user_args[i - {args_before}] = ARGV[i] end
local result = (function(KEYS, ARGV)
{snippet}
end)(user_keys, user_args)
"""
_LOG = """
local seq = redis.call('INCR', KEYS[3])
local now = redis.call('TIME')
redis.call('XADD', KEYS[2], seq .. '-0', 'resource', ARGV[4], 'epoch', epoch, 'writer', writer,
  'unix_s', now[1], 'unix_us', now[2]{value})
"""
_CLAIM = "redis.call('HSET', KEYS[1], 'epoch', epoch, 'writer', writer)\n"
_CLAIM_VALUE = "redis.call('HSET', KEYS[1], 'epoch', epoch, 'writer', writer, 'value', ARGV[3])\n"
_DONE = "return {'ok', highest, owner, result}\n"
_DONE_LOGGED = "return {'ok', highest, owner, seq, result}\n"  # before result, which may be nil
_SET = "for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i]) end"


def script(snippet: str, with_value: bool, planted: frozenset[FenceBug] = frozenset(), logged: bool = False) -> str:
    """The whole Lua script: the check (or a planted bug's), the user's part, the log entry, the claim."""
    if FenceBug.CHECK_OUTSIDE_TRANSACTION in planted:
        head = "local writer, epoch = ARGV[1], ARGV[2]\n" + _UNCHECKED
    else:
        head = _CHECK + (_STALE_OR_EQUAL if FenceBug.EQUAL_IS_STALE in planted else _STALE)
        if FenceBug.NO_WRITER_CHECK not in planted:
            head += _TAKEN
    keys_before, args_before = (3, 4) if logged else (1, 3)
    user = _USER.format(
        snippet=snippet,
        first_key=keys_before + 1,
        keys_before=keys_before,
        first_arg=args_before + 1,
        args_before=args_before,
    )
    log = _LOG.format(value=", 'value', ARGV[3]" if with_value else "") if logged else ""
    return head + user + log + (_CLAIM_VALUE if with_value else _CLAIM) + (_DONE_LOGGED if logged else _DONE)


class _Scripts:
    """What the async and blocking fences share: building each call's script and reading its answer."""

    def __init__(self, prefix: str, planted: Iterable[FenceBug | str], hook: Hook | None, log: bool | str) -> None:
        if not isinstance(prefix, str):
            raise ValueError("prefix must be a string")
        self.prefix = prefix
        self.log = log_name(log, "key")
        self.planted = planted_bugs(planted)
        self.hook = hook
        self._shas: dict[tuple[str, bool], tuple[str, str]] = {}

    def key(self, resource: str) -> str:
        return self.prefix + resource

    def compiled(self, snippet: str, with_value: bool) -> tuple[str, str]:
        """(script, its SHA-1), built once per snippet."""
        found = self._shas.get((snippet, with_value))
        if found is None:
            text = script(snippet, with_value, self.planted, self.log is not None)
            found = self._shas[(snippet, with_value)] = (text, hashlib.sha1(text.encode()).hexdigest())
        return found

    def call(
        self, resource: str, writer_id: int, epoch: int, value: bytes | None, keys: Iterable[str], args: Iterable[Any]
    ) -> tuple[list[Any], list[Any]]:
        check_claim(resource, writer_id, epoch)
        keys = list(keys)
        if any(not isinstance(k, (str, bytes)) for k in keys):
            raise ValueError("keys must be strings")
        head = [str(writer_id), str(epoch), b"" if value is None else bytes(value)]
        if self.log is None:
            return [self.key(resource), *keys], [*head, *args]
        return [self.key(resource), self.log, self.log + ":seq", *keys], [*head, resource, *args]

    def answer(self, reply: list[Any], resource: str, writer_id: int, epoch: int) -> tuple[Any, int | None]:
        """(what the user's part returned, the log entry's seq or None)."""
        kind = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if kind == "ok":
            if self.log is None:
                return (reply[3] if len(reply) > 3 else None), None
            return (reply[4] if len(reply) > 4 else None), int(reply[3])
        raise refused(resource, writer_id, epoch, kind, int(reply[1]), int(reply[2]))

    def read_log_args(self, after_seq: int, limit: int) -> tuple[str, str, str, int]:
        check_read_log(after_seq, limit)
        if self.log is None:
            raise no_log(f"a Redis fence (prefix {self.prefix!r})")
        return self.log, f"{after_seq + 1}-0", "+", limit

    def check_outside(self, current: list[Any], resource: str, writer_id: int, epoch: int) -> None:
        """The planted check-outside-transaction bug's check, in Python, on a separate read."""
        judge(resource, writer_id, epoch, int(current[0] or 0), int(current[1] or 0), self.planted)


def _accepted(entry: tuple[Any, dict[bytes, bytes]]) -> AcceptedWrite:
    entry_id, fields = entry
    seq = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])
    return AcceptedWrite(
        seq,
        fields[b"resource"].decode(),
        int(fields[b"epoch"]),
        int(fields[b"writer"]),
        fields.get(b"value"),
        int(fields[b"unix_s"]) * 1_000_000_000 + int(fields[b"unix_us"]) * 1000,
    )


def _state(fields: list[Any]) -> FenceState:
    epoch, writer, value = fields
    return (
        NEVER_WRITTEN if epoch is None else FenceState(int(epoch), int(writer), None if value is None else bytes(value))
    )


class RedisFence:
    """Fenced writes in Redis, with redis-py's asyncio client.

    `client`: a redis://, rediss:// or unix:// URL, or a redis.asyncio.Redis you made (not closed by
    close()). `prefix`: the fence hashes' key prefix. A client made from a URL never retries a command
    on its own (redis-py retries on connection errors by default): a fenced write whose reply was lost
    and that was sent again could come back refused though the first one was applied. Give a client you
    make yourself `retry=Retry(NoBackoff(), 0)` for the same reason. `log`: True (or a key) to keep a
    log of the accepted writes (see the module's doc).
    """

    def __init__(
        self,
        client: str | redis.asyncio.Redis,
        *,
        prefix: str = PREFIX,
        log: bool | str = False,
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        self._own = isinstance(client, str)
        self.client: redis.asyncio.Redis = (
            redis.asyncio.Redis.from_url(client, retry=redis.asyncio.retry.Retry(NoBackoff(), 0))
            if isinstance(client, str)
            else client
        )
        self._scripts = _Scripts(prefix, _planted, _between_check_and_write, log)

    def __repr__(self) -> str:
        return f"RedisFence(prefix={self._scripts.prefix!r})"

    async def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        """Record `value` in the resource's fence hash, if the epoch is current; else raise StaleEpoch or
        EpochTaken (subclasses of FencingRefused), having written nothing. Returns the write's seq in
        the log of accepted writes (None without `log`)."""
        return (await self._run("", True, resource, writer_id, epoch, bytes(value), (), ()))[1]

    async def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        """The log's accepted writes with seq above `after_seq`, in seq order, at most `limit` of them."""
        key, start, end, count = self._scripts.read_log_args(after_seq, limit)
        return [_accepted(entry) for entry in await self.client.xrange(key, start, end, count)]

    async def set(self, resource: str, writer_id: int, epoch: int, values: Mapping[str, Any]) -> None:
        """SET each key to its value and claim the fence, in one script, if the epoch is current."""
        await self._run(_SET, False, resource, writer_id, epoch, None, values.keys(), values.values())

    async def eval(
        self, resource: str, writer_id: int, epoch: int, script: str, keys: Iterable[str] = (), args: Iterable[Any] = ()
    ) -> Any:
        """Run your Lua `script` (the body of a function of its own KEYS and ARGV) after the check and
        before the claim, in one script; returns what it returns (Redis's conversion of it)."""
        return (await self._run(script, False, resource, writer_id, epoch, None, keys, args))[0]

    async def read(self, resource: str) -> FenceState:
        return _state(await self.client.hmget(self._scripts.key(resource), "epoch", "writer", "value"))

    async def close(self) -> None:
        if self._own:
            await self.client.aclose()

    async def _run(
        self,
        snippet: str,
        with_value: bool,
        resource: str,
        writer_id: int,
        epoch: int,
        value: bytes | None,
        keys: Iterable[str],
        args: Iterable[Any],
    ) -> tuple[Any, int | None]:
        s = self._scripts
        keys, argv = s.call(resource, writer_id, epoch, value, keys, args)
        if FenceBug.CHECK_OUTSIDE_TRANSACTION in s.planted:
            s.check_outside(await self.client.hmget(keys[0], "epoch", "writer"), resource, writer_id, epoch)
            if s.hook is not None and inspect.isawaitable(paused := s.hook(resource, writer_id, epoch)):
                await paused
        text, sha = s.compiled(snippet, with_value)
        try:
            reply = await self.client.evalsha(sha, len(keys), *keys, *argv)
        except NoScriptError:
            reply = await self.client.eval(text, len(keys), *keys, *argv)
        return s.answer(reply, resource, writer_id, epoch)


class BlockingRedisFence:
    """RedisFence without asyncio (redis.Redis): the same arguments and methods, blocking."""

    def __init__(
        self,
        client: str | redis.Redis,
        *,
        prefix: str = PREFIX,
        log: bool | str = False,
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        self._own = isinstance(client, str)
        self.client: redis.Redis = (
            redis.Redis.from_url(client, retry=Retry(NoBackoff(), 0)) if isinstance(client, str) else client
        )
        self._scripts = _Scripts(prefix, _planted, _between_check_and_write, log)

    def __repr__(self) -> str:
        return f"BlockingRedisFence(prefix={self._scripts.prefix!r})"

    def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        return self._run("", True, resource, writer_id, epoch, bytes(value), (), ())[1]

    def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        """As RedisFence.read_log."""
        key, start, end, count = self._scripts.read_log_args(after_seq, limit)
        return [_accepted(entry) for entry in self.client.xrange(key, start, end, count)]

    def set(self, resource: str, writer_id: int, epoch: int, values: Mapping[str, Any]) -> None:
        self._run(_SET, False, resource, writer_id, epoch, None, values.keys(), values.values())

    def eval(
        self, resource: str, writer_id: int, epoch: int, script: str, keys: Iterable[str] = (), args: Iterable[Any] = ()
    ) -> Any:
        return self._run(script, False, resource, writer_id, epoch, None, keys, args)[0]

    def read(self, resource: str) -> FenceState:
        return _state(self.client.hmget(self._scripts.key(resource), "epoch", "writer", "value"))

    def close(self) -> None:
        if self._own:
            self.client.close()

    def _run(
        self,
        snippet: str,
        with_value: bool,
        resource: str,
        writer_id: int,
        epoch: int,
        value: bytes | None,
        keys: Iterable[str],
        args: Iterable[Any],
    ) -> tuple[Any, int | None]:
        s = self._scripts
        keys, argv = s.call(resource, writer_id, epoch, value, keys, args)
        if FenceBug.CHECK_OUTSIDE_TRANSACTION in s.planted:
            s.check_outside(self.client.hmget(keys[0], "epoch", "writer"), resource, writer_id, epoch)
            if s.hook is not None:
                s.hook(resource, writer_id, epoch)
        text, sha = s.compiled(snippet, with_value)
        try:
            reply = self.client.evalsha(sha, len(keys), *keys, *argv)
        except NoScriptError:
            reply = self.client.eval(text, len(keys), *keys, *argv)
        return s.answer(reply, resource, writer_id, epoch)
