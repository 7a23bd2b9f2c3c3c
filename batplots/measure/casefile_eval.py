"""How well the case file reads a story: per-field precision and recall on a hand-written set.

The set (batplots/data/casefile_set.json) is openings of 1-3 sentences, each with the
entries the case file should hold. `score(items, lore)` runs
batplots.story.casefile.extract on each opening and counts, per field, the entries found
that match an expected one (true positives), all entries found and all expected:
precision = matched / found, recall = matched / expected (summed over the openings), and
F1. An entry matches at most one expected entry.

- Names (villains, henchmen, guests) match on their last name word that is not a title,
  case-folded, possessive and article dropped: "Dr. Lavinia Ames" = "Ames", "the
  Glassblower" = "Glassblower", "King Tut" = "Tut" ("Safari King", all title, keeps "King").
- Phrases (target, hideout, deathtrap) match when their content words (articles,
  prepositions and the deathtrap's verbs such as "tied to" dropped) overlap with Jaccard at
  least PHRASE_JACCARD: "giant vat of molten glass" = "lowered into a giant vat of molten
  glass"; "glass" != "from the museum; glass without damaging anything else".

`lead` counts the openings with an expected villain whose first villain found is the
first expected (the writer's villain keeps the lead).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from batplots.story import casefile

SET_PATH = Path(__file__).parents[1] / "data" / "casefile_set.json"
NAME_FIELDS = ("villains", "henchmen", "guests")
PHRASE_FIELDS = ("target", "hideout", "deathtrap")
PHRASE_JACCARD = 0.5
_STOP = frozenset("""the a an of his her their its on in at into onto inside beneath under underneath below above
over to from with by near atop toward towards up and""".split())
_TRAP_VERBS = frozenset("""tied strapped chained bound glued shackled trapped sealed locked imprisoned dangling dangle
dangles suspended hung hanging hangs lowered dropped thrown tossed""".split())
_TITLES = {t.casefold() for t in casefile.TITLES}


def load_set(path: Path | str = SET_PATH) -> list[dict]:
    """The set's items: {id, heldout, text, expected: {field: [entries]}}."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["items"] if isinstance(data, dict) else data


def name_key(entry: str) -> str:
    words = [re.sub(r"['’]s?$", "", w).casefold() for w in re.findall(r"[\w'’.-]+", entry)]
    words = [w.rstrip(".") for w in words if w and w not in {"the", "a", "an"}]
    plain = [w for w in words if w not in _TITLES and w not in {"of", "the"}]
    return (plain or words or [""])[-1]


def phrase_words(entry: str, field: str) -> set[str]:
    words = {w.casefold() for w in re.findall(r"[\w'’-]+", entry)}
    words = {re.sub(r"['’]s?$", "", w) for w in words} - _STOP
    return words - _TRAP_VERBS if field == "deathtrap" else words


def matches(field: str, found: str, expected: str) -> bool:
    if field in NAME_FIELDS:
        return name_key(found) == name_key(expected) != ""
    f, e = phrase_words(found, field), phrase_words(expected, field)
    return bool(f | e) and len(f & e) / len(f | e) >= PHRASE_JACCARD


def _matched(field: str, found: list[str], expected: list[str]) -> int:
    left = list(expected)
    hits = 0
    for entry in found:
        for i, want in enumerate(left):
            if matches(field, entry, want):
                hits += 1
                del left[i]
                break
    return hits


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def score(items: list[dict], lore=None, extract=casefile.extract, detail: bool = False) -> dict:
    """{"n", "fields": {field: {matched, found, expected, precision, recall, f1}}, "lead":
    {right, of, share}} over items (and "misses": what each opening got wrong, with detail)."""
    totals = {f: {"matched": 0, "found": 0, "expected": 0} for f in casefile.FIELDS}
    lead = {"right": 0, "of": 0}
    misses = []
    for item in items:
        got = extract(item["text"], lore)
        want = item["expected"]
        wrong = {}
        for field in casefile.FIELDS:
            found, expected = got.get(field, []), want.get(field, [])
            hit = _matched(field, found, expected)
            t = totals[field]
            t["matched"] += hit
            t["found"] += len(found)
            t["expected"] += len(expected)
            if hit != len(found) or hit != len(expected):
                wrong[field] = {"found": found, "expected": expected}
        if want.get("villains"):
            lead["of"] += 1
            lead["right"] += bool(got["villains"]) and matches("villains", got["villains"][0], want["villains"][0])
        if wrong:
            misses.append({"id": item.get("id"), "text": item["text"], "wrong": wrong})
    fields = {}
    for field, t in totals.items():
        p, r = _ratio(t["matched"], t["found"]), _ratio(t["matched"], t["expected"])
        f1 = round(2 * p * r / (p + r), 3) if p and r else (0.0 if t["expected"] else None)
        fields[field] = {**t, "precision": p, "recall": r, "f1": f1}
    out = {"n": len(items), "fields": fields, "lead": {**lead, "share": _ratio(lead["right"], lead["of"])}}
    if detail:
        out["misses"] = misses
    return out


def parts(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the tuning part, the held-out part)."""
    return [i for i in items if not i.get("heldout")], [i for i in items if i.get("heldout")]
