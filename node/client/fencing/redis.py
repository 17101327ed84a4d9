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
    FenceBug,
    FenceState,
    Hook,
    check_claim,
    judge,
    planted_bugs,
    refused,
)

PREFIX = "bullyproof_fence:"

# KEYS[1]: the fence hash; ARGV[1..3]: writer, epoch, value ('' unless `write`); the user's part sees
# KEYS[2..] and ARGV[4..] as its own KEYS and ARGV.
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
for i = 2, #KEYS do user_keys[i - 1] = KEYS[i] end
for i = 4, #ARGV do user_args[i - 3] = ARGV[i] end
local result = (function(KEYS, ARGV)
{snippet}
end)(user_keys, user_args)
"""
_CLAIM = "redis.call('HSET', KEYS[1], 'epoch', epoch, 'writer', writer)\n"
_CLAIM_VALUE = "redis.call('HSET', KEYS[1], 'epoch', epoch, 'writer', writer, 'value', ARGV[3])\n"
_DONE = "return {'ok', highest, owner, result}\n"
_SET = "for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i]) end"


def script(snippet: str, with_value: bool, planted: frozenset[FenceBug] = frozenset()) -> str:
    """The whole Lua script: the check (or a planted bug's), the user's part, the claim."""
    if FenceBug.CHECK_OUTSIDE_TRANSACTION in planted:
        head = "local writer, epoch = ARGV[1], ARGV[2]\n" + _UNCHECKED
    else:
        head = _CHECK + (_STALE_OR_EQUAL if FenceBug.EQUAL_IS_STALE in planted else _STALE)
        if FenceBug.NO_WRITER_CHECK not in planted:
            head += _TAKEN
    return head + _USER.format(snippet=snippet) + (_CLAIM_VALUE if with_value else _CLAIM) + _DONE


class _Scripts:
    """What the async and blocking fences share: building each call's script and reading its answer."""

    def __init__(self, prefix: str, planted: Iterable[FenceBug | str], hook: Hook | None) -> None:
        if not isinstance(prefix, str):
            raise ValueError("prefix must be a string")
        self.prefix = prefix
        self.planted = planted_bugs(planted)
        self.hook = hook
        self._shas: dict[tuple[str, bool], tuple[str, str]] = {}

    def key(self, resource: str) -> str:
        return self.prefix + resource

    def compiled(self, snippet: str, with_value: bool) -> tuple[str, str]:
        """(script, its SHA-1), built once per snippet."""
        found = self._shas.get((snippet, with_value))
        if found is None:
            text = script(snippet, with_value, self.planted)
            found = self._shas[(snippet, with_value)] = (text, hashlib.sha1(text.encode()).hexdigest())
        return found

    def call(
        self, resource: str, writer_id: int, epoch: int, value: bytes | None, keys: Iterable[str], args: Iterable[Any]
    ) -> tuple[list[Any], list[Any]]:
        check_claim(resource, writer_id, epoch)
        keys = list(keys)
        if any(not isinstance(k, (str, bytes)) for k in keys):
            raise ValueError("keys must be strings")
        return [self.key(resource), *keys], [str(writer_id), str(epoch), b"" if value is None else bytes(value), *args]

    def answer(self, reply: list[Any], resource: str, writer_id: int, epoch: int) -> Any:
        kind = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if kind == "ok":
            return reply[3] if len(reply) > 3 else None
        raise refused(resource, writer_id, epoch, kind, int(reply[1]), int(reply[2]))

    def check_outside(self, current: list[Any], resource: str, writer_id: int, epoch: int) -> None:
        """The planted check-outside-transaction bug's check, in Python, on a separate read."""
        judge(resource, writer_id, epoch, int(current[0] or 0), int(current[1] or 0), self.planted)


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
    make yourself `retry=Retry(NoBackoff(), 0)` for the same reason.
    """

    def __init__(
        self,
        client: str | redis.asyncio.Redis,
        *,
        prefix: str = PREFIX,
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        self._own = isinstance(client, str)
        self.client: redis.asyncio.Redis = (
            redis.asyncio.Redis.from_url(client, retry=redis.asyncio.retry.Retry(NoBackoff(), 0))
            if isinstance(client, str)
            else client
        )
        self._scripts = _Scripts(prefix, _planted, _between_check_and_write)

    def __repr__(self) -> str:
        return f"RedisFence(prefix={self._scripts.prefix!r})"

    async def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> None:
        """Record `value` in the resource's fence hash, if the epoch is current; else raise StaleEpoch or
        EpochTaken (subclasses of FencingRefused), having written nothing."""
        await self._run("", True, resource, writer_id, epoch, bytes(value), (), ())

    async def set(self, resource: str, writer_id: int, epoch: int, values: Mapping[str, Any]) -> None:
        """SET each key to its value and claim the fence, in one script, if the epoch is current."""
        await self._run(_SET, False, resource, writer_id, epoch, None, values.keys(), values.values())

    async def eval(
        self, resource: str, writer_id: int, epoch: int, script: str, keys: Iterable[str] = (), args: Iterable[Any] = ()
    ) -> Any:
        """Run your Lua `script` (the body of a function of its own KEYS and ARGV) after the check and
        before the claim, in one script; returns what it returns (Redis's conversion of it)."""
        return await self._run(script, False, resource, writer_id, epoch, None, keys, args)

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
    ) -> Any:
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
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        self._own = isinstance(client, str)
        self.client: redis.Redis = (
            redis.Redis.from_url(client, retry=Retry(NoBackoff(), 0)) if isinstance(client, str) else client
        )
        self._scripts = _Scripts(prefix, _planted, _between_check_and_write)

    def __repr__(self) -> str:
        return f"BlockingRedisFence(prefix={self._scripts.prefix!r})"

    def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> None:
        self._run("", True, resource, writer_id, epoch, bytes(value), (), ())

    def set(self, resource: str, writer_id: int, epoch: int, values: Mapping[str, Any]) -> None:
        self._run(_SET, False, resource, writer_id, epoch, None, values.keys(), values.values())

    def eval(
        self, resource: str, writer_id: int, epoch: int, script: str, keys: Iterable[str] = (), args: Iterable[Any] = ()
    ) -> Any:
        return self._run(script, False, resource, writer_id, epoch, None, keys, args)

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
    ) -> Any:
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
