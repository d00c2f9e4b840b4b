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


def check_storable(value: Any) -> None:
    """UnsafeJSON unless ``value`` (JSON-able: dicts, lists, strings, numbers...) can be stored
    on both databases: every string and key checked, depth bounded. Iterative: no recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            check_text(item)
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise UnsafeJSON("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str):
                    check_text(key)
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise UnsafeJSON(f"nested deeper than {MAX_JSON_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)
