"""The playground's CER and character diff, run in Chromium, against the Python the services use.

The page computes CER itself (no round trip per keystroke), so it must be the services'
CER: ``ocrtune_shared.cer`` (NFKC, Python's whitespace removed, code points, Levenshtein).
The diff must be a shortest one, or highlighting would mark characters that match.
"""

from __future__ import annotations

import random
import sys

import pytest

from ocrtune_shared.cer import character_error_rate, normalize

from .conftest import Console

PAIRS = [
    ("202¥科3）11订", "2029年3月11日"),  # the README's base-model line
    ("ＡＢＣ１２３", "ABC123"),  # full-width folds to half-width
    ("a\u3000b\tc\n", "abc"),  # ideographic space, tab, newline
    ("x\x1cy\x85z", "xyz"),  # whitespace to Python, not to JavaScript's \s
    ("\ufeffab", "ab"),  # whitespace to JavaScript's \s, not to Python: one edit
    ("😀字", "😀子"),  # a character outside the BMP counts once
    ("ﬁ①", "fi1"),  # compatibility forms
    ("", "金额合计"),
    ("金额", ""),
    ("实付：748.35元", "实付:748.35元"),
]


@pytest.fixture
def textdiff(page, console: Console):  # type: ignore[no-untyped-def]
    page.goto(f"{console.trainer_url}/ui/")
    page.wait_for_selector("#notice:not([hidden])")  # loaded (and asking for a key, which these checks need not)

    def run(expression: str, argument: object) -> object:
        return page.evaluate(f"async (arg) => {{ const m = await import('./common/textdiff.js'); return ({expression}); }}", argument)

    return run


def test_cer_in_the_browser_is_the_services_cer(textdiff) -> None:  # type: ignore[no-untyped-def]
    shown = textdiff("arg.map(([p, r]) => [m.normalize(p), m.normalize(r), m.cer(p, r).cer])", PAIRS)
    for (prediction, reference), (norm_p, norm_r, cer) in zip(PAIRS, shown, strict=True):
        assert (norm_p, norm_r) == (normalize(prediction), normalize(reference)), (prediction, reference)
        assert cer == character_error_rate([prediction], [reference]).corpus_cer, (prediction, reference)


def test_whitespace_is_pythons_whitespace(textdiff) -> None:  # type: ignore[no-untyped-def]
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    near_misses = ["\ufeff", "\u200b", "\u180e", "\u2060", "\u00ad", "a"]
    candidates = spaces + near_misses
    shown = textdiff("arg.map((c) => m.normalize(c))", candidates)
    assert shown == [normalize(c) for c in candidates]


def _lcs(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def test_the_diff_is_a_shortest_one(textdiff) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261206)
    alphabet = "年月日元12¥😀 "
    pairs = []
    for _ in range(300):
        a = "".join(rng.choice(alphabet[: rng.randint(2, len(alphabet))]) for _ in range(rng.randint(0, 14)))
        b = "".join(rng.choice(alphabet[: rng.randint(2, len(alphabet))]) for _ in range(rng.randint(0, 14)))
        pairs.append((a, b))
    pairs.append(("一二三四五六七八九十" * 300, "一二三四五六七八九十" * 150 + "X" + "一二三四五六七八九十" * 150))
    shown = textdiff("arg.map(([a, b]) => m.diffChars(a, b))", pairs)
    for (a, b), ops in zip(pairs, shown, strict=True):
        assert "".join(op["text"] for op in ops if op["op"] != "insert") == a
        assert "".join(op["text"] for op in ops if op["op"] != "delete") == b
        assert len("".join(op["text"] for op in ops if op["op"] == "equal")) == _lcs(a, b), (a, b)
