"""search_files' patterns: regular expressions and globs, both run by RE2.

RE2 matches in time linear in the text, with memory bounded by ``max_mem``: no pattern can
backtrack without end, as Python's ``re`` (``(x+x+)+y``) and ``pathlib``'s glob matcher
(``*a*a*a*a*b``) do. What it gives up: backreferences and look-around (see the README for the
syntax). Compiling takes the GIL for as long as the program grows, so a pattern is compiled
under a small ``VALIDATE_MAX_MEM`` when a task is submitted (about a millisecond at worst) and
refused if its program does not fit; the search itself (``tools_app.search_scan``) runs in a
process of its own.

No Django here: the search's child process imports this module alone.
"""

from __future__ import annotations

import re2

MAX_PATTERN_LENGTH = 1000
# The program's budget when validated: ~1,300 instructions, plenty for a hand-written pattern;
# compiling within it costs at most ~1-2 ms however the pattern is built (\pL{1000}, (?i)...).
VALIDATE_MAX_MEM = 128 * 1024
# When searching: the same program, with room for RE2's DFA cache (the fast path).
SEARCH_MAX_MEM = 32 * 1024 * 1024


class PatternError(ValueError):
    """A pattern RE2 cannot compile, or whose program is too large."""


def _options(max_mem: int, *, never_nl: bool) -> re2.Options:
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False  # RE2 logs refused patterns to stderr otherwise
    options.never_nl = never_nl
    return options


def _check_length(pattern: str) -> None:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"longer than {MAX_PATTERN_LENGTH} characters")


def _compile(pattern: str, max_mem: int, *, never_nl: bool) -> re2._Regexp:
    try:
        return re2.compile(pattern, _options(max_mem, never_nl=never_nl))
    except re2.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        raise PatternError(str(message)) from None


def line_regex(pattern: str, *, max_mem: int = VALIDATE_MAX_MEM) -> re2._Regexp:
    """``pattern`` as matched against each line: ``(?m)`` so ``^``/``$`` are line boundaries,
    ``never_nl`` so no match spans a newline (the whole file is searched in one call)."""
    _check_length(pattern)
    return _compile(f"(?m){pattern}", max_mem, never_nl=True)


def glob_regex(glob: str, *, max_mem: int = VALIDATE_MAX_MEM) -> re2._Regexp:
    """``glob`` as an RE2 program to ``fullmatch`` paths (see ``translate_glob``)."""
    _check_length(glob)
    return _compile(translate_glob(glob), max_mem, never_nl=False)


def _char(ch: str) -> str:
    """One literal character, safe inside and outside a class."""
    return ch if ch.isalnum() and ch.isascii() else f"\\x{{{ord(ch):x}}}"


def _bracket(glob: str, start: int, not_sep: bool) -> tuple[str, int] | None:
    """The class opening at ``glob[start] == "["`` (fnmatch's rules: ``!`` negates, a ``]``
    first is literal, ``a-z`` ranges, reversed ranges match nothing) as (RE2 class, index after
    it), or None when unclosed (then ``[`` is literal)."""
    index = start + 1
    negate = index < len(glob) and glob[index] == "!"
    if negate:
        index += 1
    first = index
    items: list[str] = []
    while index < len(glob) and (glob[index] != "]" or index == first):
        low = glob[index]
        if index + 2 < len(glob) and glob[index + 1] == "-" and glob[index + 2] != "]":
            high = glob[index + 2]
            if low <= high:
                items.append(f"{_char(low)}-{_char(high)}")
            index += 3
        else:
            items.append(_char(low))
            index += 1
    if index >= len(glob):
        return None
    body = "".join(items)
    if negate:
        # A negated class never matches a separator in a path glob ("*" does not either).
        return f"[^{body}{'/' if not_sep else ''}]", index + 1
    if not body:
        return r"[^\x00-\x{10ffff}]", index + 1  # nothing (every range reversed)
    return f"[{body}]", index + 1


def _segment(part: str, not_sep: bool) -> str:
    """One glob without separators: ``*``, ``?``, ``[...]`` and literals."""
    out: list[str] = []
    index = 0
    any_char = "[^/]" if not_sep else r"(?s:.)"
    while index < len(part):
        ch = part[index]
        if ch == "*":
            while index < len(part) and part[index] == "*":
                index += 1  # "**" inside a segment is one star
            out.append(f"{any_char}*")
            continue
        if ch == "?":
            out.append(any_char)
        elif ch == "[" and (bracket := _bracket(part, index, not_sep)) is not None:
            klass, index = bracket
            out.append(klass)
            continue
        else:
            out.append(_char(ch))
        index += 1
    return "".join(out)


def translate_glob(glob: str) -> str:
    """The RE2 pattern that fully matches what ``glob`` matches.

    Without ``/``, ``glob`` matches a file's name (``fnmatch`` rules). With ``/``, it matches the
    whole path relative to the search's folder, segment by segment (``pathlib``'s
    ``full_match`` rules): ``*``, ``?`` and ``[...]`` stay within a segment, and a ``**``
    segment matches any number of segments, none included.
    """
    if "/" not in glob:
        return _segment(glob, not_sep=False)
    parts = [part for part in glob.split("/") if part not in ("", ".")]
    out: list[str] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if part == "**":
            if index == last:
                out.append(r"(?s:.*)")
            elif parts[index + 1] != "**":
                out.append(r"(?s:.+/)?")
            continue
        out.append(_segment(part, not_sep=True))
        if index < last:
            out.append("/")
    return "".join(out)
