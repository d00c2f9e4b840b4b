"""search_files' patterns on RE2: the glob translation agrees with fnmatch and pathlib, and no
pattern can explode (in time or memory) when validated."""

from __future__ import annotations

import fnmatch
import itertools
from pathlib import PurePosixPath

import pytest
from pydantic import ValidationError

from tools_app.patterns import PatternError, glob_regex, line_regex, translate_glob
from tools_app.registry import get_tool

NAMES = ["a.py", "ab.py", ".hidden", "a]b", "a-b", "x[1].txt", "ß.txt", "a b", "a\nb", "π", "", "b"]
NAME_GLOBS = [
    "*",
    "*.py",
    "a?.py",
    "[ab]*",
    "[!a]*",
    "[]]*",
    "*[]]b",
    "[a-c]-b",
    "[z-a]*",
    "x[[]1].txt",
    "[",
    "a[",
    "*.*",
    "?",
    "ß*",
    "a*b",
    "*\\*",
]
PATHS = ["a", "a/b", "a/b/c", "a/b/c.py", "x/a/b", "a/.h/c", "a/b/", "ab/c", "a/bc/d.py"]
PATH_GLOBS = [
    "a/*",
    "a/**",
    "**/c",
    "a/**/c",
    "a/**/*.py",
    "*/b",
    "a/?",
    "**",
    "a/**/**/c",
    "a/[b]/c",
    "./a/b",
    "a//b",
    "**/*.py",
]


@pytest.mark.parametrize("glob", NAME_GLOBS)
def test_a_glob_without_slash_matches_names_as_fnmatch_does(glob: str) -> None:
    compiled = glob_regex(glob)
    for name in NAMES:
        assert bool(compiled.fullmatch(name)) == fnmatch.fnmatchcase(name, glob), (glob, name)


@pytest.mark.skipif(
    not hasattr(PurePosixPath, "full_match"), reason="PurePath.full_match is Python 3.13+"
)
@pytest.mark.parametrize("glob", PATH_GLOBS)
def test_a_glob_with_slash_matches_paths_as_pathlib_full_match_does(glob: str) -> None:
    compiled = glob_regex(glob)
    for path in PATHS:
        expected = PurePosixPath(path).full_match(glob)  # type: ignore[attr-defined,unused-ignore]
        assert bool(compiled.fullmatch(str(PurePosixPath(path)))) == expected, (glob, path)


def test_a_glob_bomb_is_linear() -> None:
    """``d/*a*a...*b`` with 20 stars: pathlib's matcher backtracked for ever on 3.13 (and 3.12
    had no full_match at all); RE2 answers at once."""
    compiled = glob_regex("d/" + "*a" * 20 + "*b")
    assert compiled.fullmatch("d/" + "a" * 40) is None
    assert compiled.fullmatch("d/" + "a" * 40 + "b") is not None


@pytest.mark.parametrize(
    "pattern",
    [
        r"\pL{1000}",
        r"(?i)[\pL\pN\pP\pS]{1000}",
        r"(\pL|\pN|\pP){999}",
        "(a{1000}){1000}",
        r"(a)\1",
        "(?=a)",
        "(?<=a)b",
        "[",
    ],
)
def test_patterns_too_large_or_outside_re2_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        line_regex(pattern)


def test_the_issues_patterns_are_harmless() -> None:
    # a{4294967294}: RE2 reads a repeat count it cannot take as literal text, costing nothing.
    assert line_regex("a{4294967294}").search(b"a{4294967294}") is not None
    assert line_regex("(x+x+)+y").search(b"x" * 100_000) is None


def test_lines_never_span_newlines_and_anchor_per_line() -> None:
    compiled = line_regex(r"b\s+c|^cd$|a.*d")
    assert [m.group() for m in compiled.finditer(b"ab\ncd\nb c")] == [b"cd", b"b c"]


def test_tool_validation_refuses_bad_globs_and_regexes() -> None:
    tool = get_tool("search_files")
    assert tool is not None
    with pytest.raises(ValidationError):
        tool.parse_args({"contains": r"\pL{1000}", "regex": True})
    with pytest.raises(ValidationError):
        tool.parse_args({"glob": "*" * 1001})
    tool.parse_args({"contains": r"\pL{1000}"})  # a substring is literal text
    tool.parse_args({"glob": "**/" + "*a" * 200 + "*b"})


def test_translation_escapes_every_literal() -> None:
    for ch in map(chr, itertools.chain(range(1, 128), [0x3C0, 0x10FFFF])):
        if ch in "*?[/":
            continue
        assert glob_regex(ch).fullmatch(ch) is not None, repr(ch)
        assert translate_glob(ch) in (ch, f"\\x{{{ord(ch):x}}}")
