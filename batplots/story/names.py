"""Names in a story: which the writer used, which a passage kept, which it mangled.

Pure functions over text. A name is a capitalised word (or a run of them, "Mr.
Freeze", "Gotham City") that is not one of the capitalised function words a
sentence starts with. Possessives count as the name ("Robin's" -> "Robin").
"""

from __future__ import annotations

import difflib
import re

# Capitalised words that are not names (sentence starts, titles on their own).
NOT_NAMES = frozenset("""
A About After Again All Also Although An And Another Any As At Back Because Before Behind Being Both But By
Despite Did Do Does Down During Each Either Even Eventually Every Finally First For From Had Has Have He Her
Here Hers She Him His How However I If In Inside Instead Into It Its Just Last Later Like Little Many Meanwhile
More Moreover Most Much My Near Neither Never Next No Nor Not Nothing Now Of Off Often On Once One Only Or
Other Our Out Outside Over Part Perhaps Realizing Right Shortly Since So Some Someone Something Soon Still
Such Suddenly Than That The Their Them Then There These They This Those Though Through Thus To Together Too
Two Under Unfortunately Until Up Upon Using Very We Well Were What Whatever When Where Whereupon Whether Which
While Who Whom Whose Why With Within Without Yes Yet You Your Unaware Unbeknownst Knowing Seeing Having
Mr Mrs Ms Miss Dr Professor Commissioner Chief Aunt Uncle Lady Lord Sir King Queen Captain Colonel General
Madame Master Officer Detective Inspector Sergeant Judge Mayor Doctor
""".split())
WORD = re.compile(r"[A-Z][A-Za-z]*(?:[-'’][A-Za-z]+)*")
POSSESSIVE = re.compile(r"['’]s?$")
# A new name this close to a known one (difflib ratio), or sharing this long a start
# with it and NEAR_MISS_PREFIX_RATIO, reads as a mangled copy ("Pendum" for "Pendulum",
# "Jeklord" for "Jekyll": 0.62) and not as another name ("Gorilla" for "Gordon": 0.46).
NEAR_MISS_RATIO = 0.75
NEAR_MISS_PREFIX = 3
NEAR_MISS_PREFIX_RATIO = 0.5
# Shorter names are too easily close to something ("Al" / "Ali").
MIN_NAME_LENGTH = 4
# The show coins words on these ("Batwoman", "Batzooka"): two such coinages are not one
# name mangled into the other.
COINAGE_PREFIXES = ("bat",)


def _clean(word: str) -> str:
    return POSSESSIVE.sub("", word)


def name_words(text: str) -> list[str]:
    """The name words of text in order, possessives stripped, repeats kept."""
    out = []
    for match in WORD.finditer(text):
        word = _clean(match.group(0))
        # One letter ("I", "A") or all capitals (POW!, BIFF!: the show's sound effects) is no name.
        if len(word) > 1 and word not in NOT_NAMES and not word.isupper():
            out.append(word)
    return out


def names(text: str) -> set[str]:
    """The distinct name words of text."""
    return set(name_words(text))


def kept(story: str, passage: str, exclude: set[str] = frozenset()) -> set[str]:
    """The story's names (but exclude) that passage uses again."""
    return (names(story) - exclude) & names(passage)


def near_miss(word: str, known: set[str]) -> str | None:
    """The known name that word mangles, or None: word is not itself known, and is close
    to a known name of at least MIN_NAME_LENGTH letters (see NEAR_MISS_RATIO/PREFIX)."""
    if word in known or len(word) < MIN_NAME_LENGTH:
        return None
    low = word.lower()
    for name in sorted(known):
        if len(name) < MIN_NAME_LENGTH or name.lower() == low:
            continue
        other = name.lower()
        if low.startswith(other) or other.startswith(low):
            continue  # "Robins", "Batmobiles": a known name with an ending, not a mangled one
        if any(low.startswith(p) and other.startswith(p) for p in COINAGE_PREFIXES):
            continue
        ratio = difflib.SequenceMatcher(None, low, other).ratio()
        if ratio >= NEAR_MISS_RATIO or (len(_common_prefix(low, other)) >= NEAR_MISS_PREFIX
                                        and ratio >= NEAR_MISS_PREFIX_RATIO):
            return name
    return None


def near_misses(passage: str, known: set[str], vocabulary: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(word, the known name it mangles) for each new name in passage; words in
    vocabulary (the corpus's own names: "Batmobile" is no mangled "Batman") are fine."""
    found = []
    for word in dict.fromkeys(name_words(passage)):
        if word in vocabulary:
            continue
        target = near_miss(word, known)
        if target is not None:
            found.append((word, target))
    return found


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def words(sentence: str) -> int:
    return len(sentence.split())
