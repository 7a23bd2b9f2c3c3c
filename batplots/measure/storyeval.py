"""Story metrics for `batplots eval`: does the model follow the story it continues?

Two sets, written for batplots (not from any corpus):
- the openings (data/openings.txt): one passage each; does it keep a name of the
  opening (any name, and the writer's own: not the show's stock cast)?
- the scripted stories (data/stories.json): each opens with a villain of the
  writer's own invention; the model writes a passage after each of the writer's
  four passages (8 turns). Is the villain named, are names mangled?

Per run (bare base, adapter, adapter + Writer): those shares, near-miss names, the
show's rules broken per 100 passages by kind (batplots.story.bible; the eval knows which
turns are the writer's, so a name the model invented and brought back counts too),
words per sentence (mean, longest), the exact-N rate, copied 8-grams and seconds
per turn. Two more Writer runs follow the story the way the web app does: "+case"
with the case file filled in from the story before every turn (villain adherence),
and "+beat" asking, on every story turn, for a beat drawn (seeded) from the page's
beat buttons (beat adherence: does the labeller find that beat in the passage's
first sentence? The other runs give the base rate for the same drawn beats).
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from batplots.story import beats as beatslib
from batplots.story import casefile
from batplots.story import names as nameslib
from batplots.story.beats import BUTTON_BEATS
from batplots.story.bible import RULES as BIBLE_RULES, Bible
from batplots.story.lore import Lore
from batplots.model.engine.base import Continuation, Settings
from batplots.corpus.index import NGRAM

STORIES_FILE = Path(__file__).parents[1] / "data" / "stories.json"
STORY_SEED = 66
# Targets of the issue "The model stays on the user's story".
TARGET_NAMES_KEPT = 0.5
TARGET_VILLAIN_NAMED = 0.5
# Targets of the issue "Case file and episode beats".
TARGET_VILLAIN_NAMED_CASE = 0.7
TARGET_BEAT_PLAYED = 0.6
TARGET_WORDS = (18, 25)
TARGET_LONGEST = 50


@dataclass
class Passage:
    """One model passage of the story metrics."""

    kind: str  # "opening" or "story"
    item: int  # which opening or story
    turn: int  # the model's turn within a story (0 for openings)
    text: str
    sentences: list[str]
    seconds: float
    names_kept: list[str] = field(default_factory=list)
    own_names_kept: list[str] = field(default_factory=list)
    villain_named: bool | None = None
    near_misses: list[str] = field(default_factory=list)
    beat_drawn: str | None = None  # the turn's drawn beat (asked for only in the +beat run)
    beat_played: str | None = None  # the labeller's beat of the passage's first sentence
    rule_breaks: list[str] = field(default_factory=list)  # the show's bible broken (batplots.story.bible)


def load_stories(path: Path | None = None) -> list[dict]:
    data = json.loads(Path(path or STORIES_FILE).read_text(encoding="utf-8"))
    return data["stories"]


def _seed(item: int, turn: int) -> int:
    return STORY_SEED * 1000 + item * 10 + turn


def drawn_beat(item: int, turn: int) -> str:
    """The beat a story turn asks for in the +beat run (the same draw in every run)."""
    return random.Random(_seed(100 + item, turn)).choice(BUTTON_BEATS)


# write(story so far, seeded settings, beat drawn for the turn or None, the writer's own
# turns so far) -> the passage
Write = Callable[[str, Settings, "str | None", str], Continuation]


def measure(write: Write, openings: list[str], stories: list[dict],
            settings: Settings, cast: frozenset[str], vocabulary: frozenset[str],
            progress: Callable[[int, int], None] | None = None, lore: Lore | None = None) -> list[Passage]:
    """Every passage of one run: write(story so far, seeded settings, drawn beat, the writer's
    turns so far) makes each one. With lore, each passage's sentences are checked against
    the show's bible, which knows who wrote what (a name the model brought in and uses
    again, not the writer's, is an invented lead)."""
    out: list[Passage] = []
    todo = len(openings) + sum(len(s["turns"]) for s in stories)

    def add(kind, item, turn, story, result, writer_text, villain=None, beat=None):
        passage = result.text.strip()
        story_names = nameslib.names(story)
        kept = sorted(story_names & nameslib.names(passage))
        misses = nameslib.near_misses(passage, story_names | cast, vocabulary | story_names)
        model_sentences = [s for s in result.sentences if s != result.narrator]  # the narrator's line is ours
        out.append(Passage(kind, item, turn, passage, model_sentences, round(result.seconds, 3), kept,
                           sorted(set(kept) - cast), None if villain is None else villain in nameslib.names(passage),
                           [f"{w} ({n})" for w, n in misses], beat,
                           beatslib.label(result.sentences[0]) if result.sentences else None,
                           _rule_breaks(story, model_sentences, lore, writer_text)))
        if progress:
            progress(len(out), todo)

    for i, opening in enumerate(openings):
        add("opening", i, 0, opening, write(opening, replace(settings, seed=_seed(i, 0)), None, opening), opening)
    for i, story in enumerate(stories):
        text = mine = ""
        for turn, writer_passage in enumerate(story["turns"]):
            text = f"{text} {writer_passage}" if text else writer_passage  # turns join with one space
            mine = f"{mine} {writer_passage}" if mine else writer_passage
            beat = drawn_beat(i, turn)
            result = write(text, replace(settings, seed=_seed(100 + i, turn)), beat, mine)
            add("story", i, turn, text, result, mine, story["villain"], beat)
            text = f"{text} {result.text.strip()}"
    return out


def metrics(passages: list[Passage], index, sentences: int) -> dict:
    """The numbers of one run (index: the corpus index, for copied 8-grams)."""
    openings = [p for p in passages if p.kind == "opening"]
    story = [p for p in passages if p.kind == "story"]
    all_sentences = [s for p in passages for s in p.sentences]
    lengths = [nameslib.words(s) for s in all_sentences]
    copied = total = 0
    if index is not None:
        for p in passages:
            found, n = index.copied_in(p.text, NGRAM)
            copied, total = copied + found, total + n
    seconds = [p.seconds for p in passages]

    def share(items, test):
        return sum(1 for x in items if test(x)) / len(items) if items else None

    return {
        "passages": len(passages),
        "names_kept_openings": share(openings, lambda p: p.names_kept),
        "own_names_kept_openings": share(openings, lambda p: p.own_names_kept),
        "names_kept_stories": share(story, lambda p: p.names_kept),
        "villain_named": share(story, lambda p: p.villain_named),
        # Asked for in the +beat run; elsewhere the base rate of the same drawn beats.
        "beat_played": share(story, lambda p: p.beat_played == p.beat_drawn),
        "near_miss_names": sum(len(p.near_misses) for p in passages),
        # Per 100 passages, each rule of the show's bible broken (a passage may break several).
        "rule_breaks_per_100": _per_100(passages, None),
        **{f"rule_breaks_per_100_{rule}": _per_100(passages, rule) for rule in BIBLE_RULES},
        "words_per_sentence_mean": statistics.fmean(lengths) if lengths else None,
        "words_per_sentence_max": max(lengths) if lengths else None,
        "exact_n_rate": share(passages, lambda p: len(p.sentences) == sentences),
        "copied_ngrams": copied if index is not None else None,
        "ngrams": total if index is not None else None,
        "seconds_per_turn_mean": statistics.fmean(seconds) if seconds else None,
        "seconds_per_turn_median": statistics.median(seconds) if seconds else None,
    }


def targets(run: dict) -> dict:
    """Which targets a run meets (None where not measured)."""
    lo, hi = TARGET_WORDS
    mean, longest = run.get("words_per_sentence_mean"), run.get("words_per_sentence_max")
    return {
        "names_kept_openings >= 50%": run["names_kept_openings"] is not None
        and run["names_kept_openings"] >= TARGET_NAMES_KEPT,
        "villain_named >= 50%": run["villain_named"] is not None and run["villain_named"] >= TARGET_VILLAIN_NAMED,
        "no near-miss names": run["near_miss_names"] == 0,
        "words per sentence 18-25, none over 50": mean is not None and lo <= mean <= hi and longest <= TARGET_LONGEST,
        "villain_named >= 70% (with the case file)": run["villain_named"] is not None
        and run["villain_named"] >= TARGET_VILLAIN_NAMED_CASE,
        "beat played >= 60% (when asked)": run.get("beat_played") is not None
        and run["beat_played"] >= TARGET_BEAT_PLAYED,
    }


ROWS = [
    ("continuations keeping a name of the opening", "names_kept_openings", "pct"),
    ("... keeping one of the writer's own names", "own_names_kept_openings", "pct"),
    ("story passages naming the villain", "villain_named", "pct"),
    ("first sentence plays the drawn beat (asked only in +beat)", "beat_played", "pct"),
    ("story passages keeping a name", "names_kept_stories", "pct"),
    ("near-miss names", "near_miss_names", "int"),
    ("rules of the show broken, per 100 passages", "rule_breaks_per_100", "num"),
    *((f"... {rule}", f"rule_breaks_per_100_{rule}", "num") for rule in BIBLE_RULES),
    ("words per sentence, mean", "words_per_sentence_mean", "num"),
    ("words per sentence, longest", "words_per_sentence_max", "int"),
    ("exactly N sentences", "exact_n_rate", "pct"),
    ("copied 8-grams", "copied_ngrams", "int"),
    ("seconds per turn, mean / median", ("seconds_per_turn_mean", "seconds_per_turn_median"), "pair"),
]


def _rule_breaks(story: str, sentences: list[str], lore: Lore | None, writer_text: str | None = None) -> list[str]:
    """Each rule of the show's bible a passage's sentences break (none checked without lore)."""
    if lore is None:
        return []
    bible = Bible(story, lore, writer_names=None if writer_text is None else nameslib.names(writer_text))
    return [str(b) for s in sentences for b in bible.breaks(s)]


def _per_100(passages: list[Passage], rule: str | None) -> float | None:
    if not passages:
        return None
    found = sum(1 for p in passages for b in p.rule_breaks if rule is None or b.startswith(rule + " "))
    return 100 * found / len(passages)


def format_table(runs: dict[str, dict]) -> str:
    names = list(runs)
    lines = ["| story metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, key, kind in ROWS:
        cells = []
        for name in names:
            run = runs[name]
            if kind == "pair":
                a, b = (run.get(k) for k in key)
                cells.append("-" if a is None else f"{a:.2f} / {b:.2f}")
                continue
            value = run.get(key)
            cells.append("-" if value is None else f"{100 * value:.0f}%" if kind == "pct"
                         else f"{value:.1f}" if kind == "num" else str(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_dicts(passages: list[Passage]) -> list[dict]:
    return [asdict(p) for p in passages]


# The story runs of `batplots eval`, side by side.
RUNS = ("base", "adapter", "adapter+writer", "adapter+writer+case", "adapter+writer+beat")
WRITER_RUNS = RUNS[2:]


def run(name: str, writer, settings: Settings, openings: list[str], stories: list[dict], index, lore,
        progress: Callable[[str, int, int], None] | None = None) -> tuple[dict, list[Passage]]:
    """One story run. writer comes from batplots.story.writer.open_writer, as in `serve`: the
    Writer runs use it as it is (its takes, copy guard, lore and conditioning), and the
    base and adapter runs draw one sample a passage from its engine (the copy guard vets
    it when settings.copy_limit is not 0). index: the corpus index for copied n-grams;
    lore: the show's names the metrics count by (the adapter's in every run, so that
    runs compare), and the case file's."""
    from batplots.story import passage as passagelib

    def write(story: str, s: Settings, beat: str | None, writer_text: str) -> Continuation:
        if name not in WRITER_RUNS:
            check = writer.guard.sentence_check(s.copy_limit) if writer.guard is not None else None
            return passagelib.run(writer.engine, story, s, check=check)
        # The case file as the web app keeps it: filled in from the story before each turn.
        case = casefile.autofill(casefile.empty(), story, lore) if name != "adapter+writer" else None
        return writer.run(story, s, case=case, beat=beat if name == "adapter+writer+beat" else None,
                          writer_text=writer_text)

    passages = measure(write, openings, stories, settings, lore.cast, lore.vocabulary,
                       (lambda done, total: progress(f"story {name}", done, total)) if progress else None, lore)
    result = metrics(passages, index, settings.sentences)
    result["takes"] = writer.takes if name in WRITER_RUNS else 1
    result["targets"] = targets(result)
    return result, passages
