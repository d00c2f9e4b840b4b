"""JSON from callers and from tools, checked before anything stores or parses it further.

What both databases can hold: no NUL character (PostgreSQL's text and jsonb refuse it) and no
lone surrogate (not UTF-8 at all: no driver can encode it), at a nesting depth that neither
Python's recursive encoders and decoders nor the pages' renderers choke on. Checking here, per
request, keeps a bad value out of the group commit's shared transaction and a bad result out of
the worker's completion batch.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any real task needs (a chat message's content parts are ~6 levels).
MAX_JSON_DEPTH = 64


class UnsafeJSON(ValueError):
    """A value the store cannot hold, or JSON too deep to take."""


def loads(text: str | bytes) -> Any:
    """``json.loads``, refusing nesting deeper than ``MAX_JSON_DEPTH`` (ValueError; a
    RecursionError from a very deep document is one too) and NaN/Infinity."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnsafeJSON(TOO_DEEP) from None
    if isinstance(text, bytes):
        brackets, constants = (
            text.count(b"[") + text.count(b"{"),
            b"NaN" in text or b"Infinity" in text,
        )
    else:
        brackets, constants = text.count("[") + text.count("{"), "NaN" in text or "Infinity" in text
    if constants:  # rare (and maybe only inside strings): parsed again to tell
        json.loads(text, parse_constant=_no_constant)
    # Fewer brackets than the limit cannot nest deeper than it: no walk (most bodies).
    if brackets > MAX_JSON_DEPTH:
        _check_depth(value)
    return value


TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


def _check_depth(value: Any) -> None:
    """Level by level, containers only (a 100-task batch: ~200 of them)."""
    level = [value]
    for _ in range(MAX_JSON_DEPTH):
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below += [c for c in children if type(c) is dict or type(c) is list]
        if not below:
            return
        level = below
    raise UnsafeJSON(TOO_DEEP)


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: PostgreSQL's jsonb and every strict client refuse them.
    # (A number too large for a float, 1e999, becomes inf: check_storable refuses that.)
    raise UnsafeJSON(f"{name} is not a JSON number")


def check_text(text: str) -> str:
    """``text`` unchanged if both databases can store it; UnsafeJSON naming the problem."""
    if "\x00" in text:
        raise UnsafeJSON("text must not contain NUL (\\u0000) characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UnsafeJSON("text must not contain lone surrogates (\\ud800-\\udfff)") from None
    return text


def is_storable_text(text: str) -> bool:
    try:
        check_text(text)
    except UnsafeJSON:
        return False
    return True


def check_storable(value: Any) -> int:
    """UnsafeJSON unless ``value`` (JSON-able: dicts, lists, strings, numbers...) can be stored
    on both databases: every string and key checked, numbers finite, depth bounded (so the
    recursion is too). Returns a rough size (characters of text plus a few per item), a lower
    bound of its JSON's length. On every submit and every result: kept to plain type tests."""
    return _storable(value, 1)


def _storable(item: Any, depth: int) -> int:
    kind = type(item)
    if kind is str:
        if "\x00" in item or not (item.isascii() or _encodable(item)):
            check_text(item)  # raises, naming the problem
        return len(item) + 2
    if kind is int or kind is bool or item is None:
        return 4
    if kind is dict:
        if depth > MAX_JSON_DEPTH:
            raise UnsafeJSON(TOO_DEEP)
        size = 4
        for key, child in item.items():
            if type(key) is str:
                size += _storable(key, depth) + 1
            size += _storable(child, depth + 1)
        return size
    if kind is list or kind is tuple:
        if depth > MAX_JSON_DEPTH:
            raise UnsafeJSON(TOO_DEEP)
        return 4 + sum(_storable(child, depth + 1) for child in item)
    if kind is float:
        if not math.isfinite(item):
            raise UnsafeJSON("numbers must be finite (no NaN or Infinity)")
        return 4
    # Subclasses (a StrEnum, an IntEnum...) as their base type.
    for base in (str, int, float, dict, list, tuple):
        if isinstance(item, base):
            return _storable(base(item), depth)  # type: ignore[arg-type]  # item is a base
    raise UnsafeJSON(f"{kind.__name__} is not a JSON value")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A character takes at most this many bytes in JSON text (an escape such as \u0001).
_MAX_BYTES_PER_CHAR = 6


def check_result(value: Any, max_bytes: int) -> None:
    """UnsafeJSON unless a tool's result can be stored: ``check_storable``, and its JSON text
    (UTF-8) at most ``max_bytes``. Encoded only when the rough size says it might be over."""
    rough = check_storable(value)
    if rough > max_bytes:
        raise UnsafeJSON(f"the result is larger than {max_bytes} bytes")
    if rough * _MAX_BYTES_PER_CHAR > max_bytes:
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > max_bytes:
            raise UnsafeJSON(f"the result is {size} bytes of JSON, over {max_bytes}")


def rough_size_over(value: Any, limit: int) -> bool:
    """Whether ``value``'s JSON is roughly over ``limit`` characters (strings' lengths plus a
    few per item); stops as soon as it is."""
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            size += 4 + sum(len(key) + 3 for key in item if isinstance(key, str))
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            size += 4
            pending.extend(item)
        else:
            size += 4
        if size > limit:
            return True
    return False


def storable_text(text: str) -> str:
    """``text`` made storable: NUL replaced by U+FFFD, lone surrogates by "?" (for messages
    that quote what they could not take)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")  # a surrogate becomes "?"
    return text
