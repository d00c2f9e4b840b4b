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
    RecursionError from a very deep document is one too)."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnsafeJSON(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    # A document with fewer brackets than the limit cannot be too deep: no walk (most bodies).
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    if brackets > MAX_JSON_DEPTH:
        check_depth(value)
    return value


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: PostgreSQL's jsonb and every strict client refuse them.
    raise UnsafeJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise UnsafeJSON(f"{text[:20]} is out of range")
    return number


def check_depth(value: Any) -> None:
    """UnsafeJSON when ``value`` nests lists and dicts deeper than ``MAX_JSON_DEPTH``."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise UnsafeJSON(f"nested deeper than {MAX_JSON_DEPTH} levels")
        pending.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))


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
    on both databases: every string and key checked, numbers finite, depth bounded. Iterative:
    no recursion. Returns a rough size (characters of text plus a few per item), a lower bound
    of its JSON's length."""
    size = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            check_text(item)
            size += len(item) + 2
            continue
        size += 4
        if isinstance(item, float) and not math.isfinite(item):
            raise UnsafeJSON("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str):
                    check_text(key)
                    size += len(key) + 3
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        elif item is None or isinstance(item, (bool, int, float)):
            continue
        else:
            raise UnsafeJSON(f"{type(item).__name__} is not a JSON value")
        if depth > MAX_JSON_DEPTH:
            raise UnsafeJSON(f"nested deeper than {MAX_JSON_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)
    return size


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
