"""Hypothesis strategies made from protobuf descriptors, and hostile encodings of their messages.

Nothing here knows bullyproof's messages: `messages(descriptor)` walks the descriptor's fields and
builds a value per field type (integers biased to small numbers and to the edges of their range,
unknown enum numbers, empty, long and non-ASCII strings and bytes, nested messages, repeated fields
and maps), so a new field or RPC in the .proto is fuzzed without new code. `encodings(descriptor)`
serialises such a message and may append unknown fields (well-formed protobuf a parser must accept);
`malformed(descriptor)` damages an encoding (truncated, bytes flipped, invalid UTF-8 in a string field,
wrong wire types), which a server must refuse with a precise status.

Hypothesis spends about 0.5 ms drawing one message of eight fields, too slow for 10,000 requests per
RPC. `batches(descriptor, size)` therefore draws a few messages through Hypothesis and derives the
rest of the batch from them with a seeded `random.Random` (`mutant`: the same per-type value rules,
one to three fields re-drawn, sometimes unknown fields added), about 30 times faster. A batch is
reproducible from its Hypothesis example, and a failing request is printed as bytes.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

F = FieldDescriptor

INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
MAX_DEPTH = 3  # nested messages below this are left unset (a recursive message would never end)
# Values worth trying more often, by field name: ((name, (value, ...)), ...), hashable for the caches.
Hints = tuple[tuple[str, tuple[Any, ...]], ...]
HINT_WEIGHT = 8  # a hinted field takes a hinted value 8 times in 9
HINT_SHARE = HINT_WEIGHT / (HINT_WEIGHT + 1)


def edges(lo: int, hi: int) -> list[int]:
    """The values where integer handling breaks: around powers of two (sign bits, varint lengths,
    2**53 for floats, 2**62/2**63 for signed 64-bit storage) and the range's own ends."""
    found = {lo, hi, 0}
    for k in (1, 7, 8, 14, 15, 16, 21, 31, 32, 35, 53, 62, 63, 64):
        for v in (2**k - 1, 2**k, 2**k + 1, -(2**k), -(2**k) - 1, -(2**k) + 1):
            if lo <= v <= hi:
                found.add(v)
    return sorted(found)


def integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    # A third each: small numbers (ids, counts, epochs of a young cluster), edges, anything.
    small = st.integers(max(lo, -2), min(hi, 9))
    return st.one_of(small, st.sampled_from(edges(lo, hi)), st.integers(lo, hi))


# Any code point but surrogates (protobuf strings are UTF-8 and cannot hold them).
TEXT_CHARS = st.characters(exclude_categories=("Cs",))


def texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.text(TEXT_CHARS, max_size=24),
        st.text(st.sampled_from("az/\\.%\x00\n\u00e9\u4e2d\U0001f600"), min_size=1, max_size=40),
        st.builds(lambda c, n: c * n, TEXT_CHARS, st.integers(256, 4096)),  # long runs
    )


def blobs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=64),
        st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=4), st.integers(256, 8192)),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in INT_RANGES:
        return integers(*INT_RANGES[t])
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return texts()
    if t == F.TYPE_BYTES:
        return blobs()
    if t == F.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if t == F.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if t == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        if getattr(field.enum_type, "is_closed", False):  # proto2 enums take only their values
            return st.sampled_from(known)
        return st.one_of(st.sampled_from(known), integers(-(2**31), 2**31 - 1))  # unknown numbers too
    raise TypeError(f"no strategy for field {field.full_name} of type {t}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5 has is_repeated; label is deprecated there
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == F.LABEL_REPEATED


def _mostly(hinted: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Not one_of(hinted, ..., other): Hypothesis does not keep one_of's branches equally likely.
    return st.integers(0, HINT_WEIGHT).flatmap(lambda i: hinted if i else other)


def _field_value(field: FieldDescriptor, depth: int, hints: Hints) -> st.SearchStrategy[Any] | None:
    if _is_map(field):
        key_f = field.message_type.fields_by_name["key"]
        val_f = field.message_type.fields_by_name["value"]
        val = _single(val_f, depth + 1, hints)
        if val is None:
            return None
        return st.dictionaries(_scalar(key_f), val, max_size=6)
    hinted = dict(hints).get(field.name) if _is_repeated(field) else None
    single = _single(field, depth, () if hinted else hints)
    if single is None:
        return None
    if _is_repeated(field):
        # Long lists repeat a short one: Hypothesis would draw every element of a long list.
        long = st.builds(lambda xs, n: (xs * n)[:300], st.lists(single, min_size=1, max_size=3), st.integers(3, 100))
        lists = st.one_of(st.lists(single, max_size=6), long)
        if hinted:  # a repeated field's hints are whole lists
            return _mostly(st.sampled_from(hinted), lists)
        return lists
    return single


def _single(field: FieldDescriptor, depth: int, hints: Hints) -> st.SearchStrategy[Any] | None:
    if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
        if depth >= MAX_DEPTH:
            return None
        return messages(field.message_type, depth + 1, hints)
    hinted = dict(hints).get(field.name)
    if hinted:  # mostly one of the values the caller says matter (ids of members, say)
        return _mostly(st.sampled_from(hinted), _scalar(field))
    return _scalar(field)


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    msg = message_class(descriptor)()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(msg, name) if (_is_repeated(field) or field.type == F.TYPE_MESSAGE) else None
        if _is_map(field):
            val_f = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if val_f.type == F.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif _is_repeated(field):
            if field.type == F.TYPE_MESSAGE:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif field.type == F.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)  # a later field of the same oneof replaces an earlier one
    return msg


@cache
def messages(descriptor: Descriptor, depth: int = 0, hints: Hints = ()) -> st.SearchStrategy[Message]:
    """Any message of this type: each field unset or set to a value of its type. `hints` names
    values worth trying more often, by field name ((("sender_id", (1, 2, 3)),), say): without them
    almost every request fails the first check (who sent it) and the rest of the handler goes untested."""
    fields = {f.name: s for f in descriptor.fields if (s := _field_value(f, depth, hints)) is not None}
    hinted = {name for name, _ in hints}
    required = {k: v for k, v in fields.items() if k in hinted}  # hinted fields are always set
    optional = {k: v for k, v in fields.items() if k not in hinted}
    return st.fixed_dictionaries(required, optional=optional).map(lambda values: _build(descriptor, values))


# ---- the wire ---------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def _unknown_field(numbers: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    payloads = st.one_of(
        st.builds(lambda n, v: tag(n, 0) + varint(v), numbers, integers(0, 2**64 - 1)),
        st.builds(lambda n, b: tag(n, 1) + b, numbers, st.binary(min_size=8, max_size=8)),
        st.builds(lambda n, b: tag(n, 2) + varint(len(b)) + b, numbers, st.binary(max_size=200)),
        st.builds(lambda n, b: tag(n, 5) + b, numbers, st.binary(min_size=4, max_size=4)),
    )
    return payloads


def unknown_fields(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Well-formed fields this message does not define (a newer sender's, or an attacker's)."""
    used = {f.number for f in descriptor.fields}
    numbers = st.one_of(st.integers(1, 40), st.integers(1, 2**29 - 1)).filter(
        lambda n: n not in used and not 19000 <= n <= 19999
    )
    return st.lists(_unknown_field(numbers), max_size=4).map(b"".join)


@cache
def encodings(descriptor: Descriptor, hints: Hints = ()) -> st.SearchStrategy[bytes]:
    """Well-formed encodings: a message of this type, sometimes with unknown fields around it."""
    plain = messages(descriptor, 0, hints).map(lambda m: m.SerializeToString())
    extra = st.builds(lambda a, m, b: a + m + b, unknown_fields(descriptor), plain, unknown_fields(descriptor))
    return st.one_of(plain, plain, extra)


def _damage(data: bytes, how: str, at: int, junk: bytes) -> bytes:
    if not data:
        return junk
    i = at % len(data)
    if how == "truncate":
        return data[:i]
    if how == "flip":
        return data[:i] + bytes([data[i] ^ (junk[0] if junk else 0xFF)]) + data[i + 1 :]
    if how == "insert":
        return data[:i] + junk + data[i:]
    return junk  # "replace"


def _bad_utf8_strings(descriptor: Descriptor) -> st.SearchStrategy[bytes] | None:
    numbers = [f.number for f in descriptor.fields if f.type == F.TYPE_STRING]
    if not numbers:
        return None
    bad = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\x80b", b"\xc0\xaf"])
    return st.builds(lambda n, b: tag(n, 2) + varint(len(b)) + b, st.sampled_from(numbers), bad)


def _wrong_wire_types(descriptor: Descriptor) -> st.SearchStrategy[bytes] | None:
    numbers = [f.number for f in descriptor.fields]
    if not numbers:
        return None
    return st.builds(
        lambda n, w, b: tag(n, w) + b, st.sampled_from(numbers), st.sampled_from([3, 4, 6, 7]), st.binary(max_size=8)
    )


@cache
def malformed(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Damaged encodings. Some still parse (a cut at a field boundary); `parses` tells which."""
    damaged = st.builds(
        _damage,
        encodings(descriptor),
        st.sampled_from(["truncate", "flip", "insert", "replace"]),
        st.integers(0, 2**16),
        st.binary(min_size=1, max_size=16),
    )
    options = [
        damaged,
        st.sampled_from([b"\x08", b"\x0a\x05ab", b"\x80", b"\xff" * 11, b"\x0f", b"\x0a\xff\xff\xff\xff\x0f"]),
    ]
    for extra in (_bad_utf8_strings(descriptor), _wrong_wire_types(descriptor)):
        if extra is not None:
            options.append(st.builds(lambda m, x: m + x, encodings(descriptor), extra))
    return st.one_of(*options)


def parses(descriptor: Descriptor, data: bytes) -> bool:
    try:
        message_class(descriptor).FromString(data)
    except DecodeError:
        return False
    return True


# ---- fast derived values (the same rules as the strategies above, drawn from a seeded Random) ------


def _random_int(lo: int, hi: int, rng: random.Random) -> int:
    r = rng.random()
    if r < 1 / 3:
        return rng.randint(max(lo, -2), min(hi, 9))
    if r < 2 / 3:
        return rng.choice(edges(lo, hi))
    return rng.randint(lo, hi)


def _random_text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
        return ""
    if r < 0.7:
        return "".join(rng.choice("az/\\.%\x00\n\u00e9\u4e2d\U0001f600") for _ in range(rng.randint(1, 40)))
    if r < 0.95:
        return "".join(
            chr(rng.choice([rng.randint(32, 126), rng.randint(0xA0, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
            for _ in range(rng.randint(1, 40))
        )
    return rng.choice("x\u00e9\U0001f600") * rng.randint(256, 4096)


def _random_bytes(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.2:
        return b""
    if r < 0.9:
        return rng.randbytes(rng.randint(1, 64))
    return rng.randbytes(rng.randint(1, 4)) * rng.randint(256, 2048)


def _random_scalar(field: FieldDescriptor, rng: random.Random, hints: dict[str, tuple[Any, ...]] | None = None) -> Any:
    hinted = hints.get(field.name) if hints else None
    if hinted and rng.random() < HINT_SHARE:
        return rng.choice(hinted)
    t = field.type
    if t in INT_RANGES:
        return _random_int(*INT_RANGES[t], rng)
    if t == F.TYPE_BOOL:
        return rng.random() < 0.5
    if t == F.TYPE_STRING:
        return _random_text(rng)
    if t == F.TYPE_BYTES:
        return _random_bytes(rng)
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return rng.choice([0.0, -0.0, 1.5, -1e300, 1e300, float("inf"), float("-inf"), float("nan"), rng.random()])
    if t == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        if getattr(field.enum_type, "is_closed", False) or rng.random() < 0.5:
            return rng.choice(known)
        return _random_int(-(2**31), 2**31 - 1, rng)
    raise TypeError(f"no value for field {field.full_name} of type {t}")


def _set_random(
    msg: Message,
    field: FieldDescriptor,
    rng: random.Random,
    depth: int,
    hints: dict[str, tuple[Any, ...]] | None = None,
) -> None:
    """Give `field` of `msg` a fresh random value (or clear it)."""
    msg.ClearField(field.name)
    if rng.random() < 0.2 and not (hints and field.name in hints):
        return  # unset
    if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP) and depth >= MAX_DEPTH:
        return
    if _is_map(field):
        key_f = field.message_type.fields_by_name["key"]
        val_f = field.message_type.fields_by_name["value"]
        target = getattr(msg, field.name)
        for _ in range(rng.randint(0, 6)):
            k = _random_scalar(key_f, rng)
            if val_f.type == F.TYPE_MESSAGE:
                if depth + 1 < MAX_DEPTH:
                    random_message(val_f.message_type, rng, depth + 1, into=target[k], hints=hints)
            else:
                target[k] = _random_scalar(val_f, rng, hints)
        return
    if _is_repeated(field) and hints and field.name in hints and rng.random() < HINT_SHARE:
        getattr(msg, field.name).extend(rng.choice(hints[field.name]))  # a repeated field's hints are whole lists
        return
    count = (rng.randint(0, 6) if rng.random() < 0.9 else rng.randint(7, 300)) if _is_repeated(field) else 1
    for _ in range(count):
        if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
            sub = getattr(msg, field.name).add() if _is_repeated(field) else getattr(msg, field.name)
            random_message(field.message_type, rng, depth + 1, into=sub, hints=hints)
            if not _is_repeated(field):
                sub.SetInParent()
        elif _is_repeated(field):
            getattr(msg, field.name).append(_random_scalar(field, rng))  # (its hints are whole lists)
        else:
            setattr(msg, field.name, _random_scalar(field, rng, hints))


def random_message(
    descriptor: Descriptor,
    rng: random.Random,
    depth: int = 0,
    into: Message | None = None,
    hints: dict[str, tuple[Any, ...]] | None = None,
) -> Message:
    msg = message_class(descriptor)() if into is None else into
    for field in descriptor.fields:
        if rng.random() < 0.6 or (hints and field.name in hints):
            _set_random(msg, field, rng, depth, hints)
    return msg


def _random_unknown(descriptor: Descriptor, rng: random.Random) -> bytes:
    used = {f.number for f in descriptor.fields}
    out = b""
    for _ in range(rng.randint(1, 3)):
        n = rng.choice([rng.randint(1, 40), rng.randint(1, 2**29 - 1)])
        if n in used or 19000 <= n <= 19999:
            continue
        w = rng.choice([0, 1, 2, 5])
        if w == 0:
            out += tag(n, 0) + varint(_random_int(0, 2**64 - 1, rng))
        elif w == 1:
            out += tag(n, 1) + rng.randbytes(8)
        elif w == 2:
            b = rng.randbytes(rng.randint(0, 100))
            out += tag(n, 2) + varint(len(b)) + b
        else:
            out += tag(n, 5) + rng.randbytes(4)
    return out


def mutant(
    base: bytes, descriptor: Descriptor, rng: random.Random, hints: dict[str, tuple[Any, ...]] | None = None
) -> bytes:
    """`base` (a well-formed encoding) with one to three fields re-drawn, or a fresh random message;
    sometimes with unknown fields before or after."""
    msg = message_class(descriptor).FromString(base)
    if rng.random() < 0.15 or not descriptor.fields:
        msg = random_message(descriptor, rng, hints=hints)
    else:
        for field in rng.sample(list(descriptor.fields), k=min(len(descriptor.fields), rng.randint(1, 3))):
            _set_random(msg, field, rng, 0, hints)
    data = msg.SerializeToString()
    r = rng.random()
    if r < 0.1:
        data = _random_unknown(descriptor, rng) + data
    elif r < 0.2:
        data += _random_unknown(descriptor, rng)
    return data


def batches(
    descriptor: Descriptor, size: int = 100, drawn: int = 8, hints: Hints = ()
) -> st.SearchStrategy[list[bytes]]:
    """`size` well-formed encodings: `drawn` from Hypothesis, the rest mutants of them."""
    hint_map = dict(hints)

    def expand(seeds: list[bytes], seed: int) -> list[bytes]:
        rng = random.Random(seed)  # not st.randoms(): Hypothesis would record every draw of it
        return seeds + [mutant(rng.choice(seeds), descriptor, rng, hint_map) for _ in range(size - len(seeds))]

    return st.builds(
        expand, st.lists(encodings(descriptor, hints), min_size=drawn, max_size=drawn), st.integers(0, 2**64 - 1)
    )


# ---- what a run of requests covered --------------------------------------------------------------


def _is_set(msg: Message, field: FieldDescriptor) -> bool:
    value = getattr(msg, field.name)
    if _is_repeated(field):
        return len(value) > 0
    if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
        return msg.HasField(field.name)
    return value != field.default_value


def _hinted_goals(field: FieldDescriptor, hinted: tuple[Any, ...]) -> set[str]:
    if _is_repeated(field):  # its hints are whole lists: one of them, and another list
        return {f"{field.name}: a hinted list", f"{field.name}: another list"}
    goals = {f"{field.name} = {v!r}" for v in hinted}
    if not (field.type == F.TYPE_BOOL and {True, False} <= set(hinted)):
        goals.add(f"{field.name}: another value")
    return goals


def coverage_goals(descriptor: Descriptor, hints: Hints = ()) -> frozenset[str]:
    """What a run of requests of this type should have sent at least once: every top-level field
    set and unset; a hinted field, each of its hinted values and some other value; unknown fields."""
    hint_map = dict(hints)
    goals = {"unknown fields"}
    for field in descriptor.fields:
        if field.name in hint_map:
            goals |= _hinted_goals(field, hint_map[field.name])
        else:
            goals |= {f"{field.name}: set", f"{field.name}: unset"}
    return frozenset(goals)


def covered(descriptor: Descriptor, body: bytes, hints: Hints = ()) -> set[str]:
    """The coverage_goals one well-formed request meets."""
    hint_map = dict(hints)
    msg = message_class(descriptor).FromString(body)
    whole = msg.SerializeToString()
    msg.DiscardUnknownFields()
    met = {"unknown fields"} if msg.SerializeToString() != whole else set()
    for field in descriptor.fields:
        value = getattr(msg, field.name)
        if field.name in hint_map and _is_repeated(field):
            hinted = {tuple(v) for v in hint_map[field.name]}
            met.add(f"{field.name}: {'a hinted list' if tuple(value) in hinted else 'another list'}")
        elif field.name in hint_map:
            met.add(f"{field.name} = {value!r}" if value in hint_map[field.name] else f"{field.name}: another value")
        else:
            met.add(f"{field.name}: {'set' if _is_set(msg, field) else 'unset'}")
    return met
