"""The Writer's story reading, once per sentence (batplots.story.storyread), gives what the
whole-text reading gave: the old computations (kept here, as they were, only for this
test) against the new on the corpus's episodes and the eval's stories, each read whole and
grown passage by passage (so the split of a longer story resumes from the shorter one's)."""

import json
import re
from pathlib import Path

import pytest

from batplots.corpus.episodes import split_text_into_episodes
from batplots.model.weights import ADAPTERS_DIR
from batplots.story import names as nameslib
from batplots.story import status as st
from batplots.story import storyread
from batplots.story.bible import BAT_PREFIX, MIN_BAT_WORD, TITLE_WORDS, Bible
from batplots.story.lore import Lore, load_lore, name_pattern, pronoun_of, villains_in
from batplots.story.ranking import lead_name
from batplots.story.threads import open_thread
from batplots.text import split_sentences
from tests.conftest import SHARED_CORPUS

ROOT = Path(__file__).resolve().parents[1]
MAX_EPISODES = 40  # enough to cover the corpus's names; the suite stays quick
PASSAGE_CHARS = 700  # a story grown in passages of about this many characters
CASE_VILLAINS = ("The Glassblower", "Mr. Freeze")
CASE_HENCHMEN = ("Shard", "Blot")
PROBES = ("The Joker laughs as he robs the Gotham City Bank.", "Catwoman escapes, and he purrs at Batman.",
          "Batman, Robin and Bruce Wayne race to the Batcave.", "The Penguin drives off to the docks.",
          "She smiles at the Riddler.", "Batwing leads the henchmen.", "Freeze tells Mr. Freeze.",
          "The Batplasma glows.", "Alfred serves tea.", "Batman and Robin have been .",
          "Shard robs the museum while the Glassblower laughs.", "Pemberton drives to the docks.")
WRITER_NAMES = {"Glassblower", "Pemberton"}


# ---------------------------------------------------------------- the old reading, as it was
def old_told(sentence, cast, statuses=None):
    if st.UNTOLD.search(sentence.strip()):
        return {}
    statuses = statuses or {}
    found = st.found_in(sentence, cast)
    if not found and not st.TRAP_UNDONE.search(sentence):
        return {}
    out = {}

    def mark(names, status):
        for name in names:
            out[name] = status

    def captured(names, by_law):
        for name in names:
            hero = name in cast.heroes
            out[name] = st.CAUGHT if (by_law and not hero) or name in cast.villains else st.TRAPPED if hero else (
                st.CAUGHT if by_law else st.TRAPPED)

    for m in st.POLICE_SUBJECT.finditer(sentence):
        mark(st.group_before(found, sentence, m.start()), st.CAUGHT)
    for m in st.CAPTURE_SUBJECT.finditer(sentence):
        captured(st.group_before(found, sentence, m.start()), bool(st.LAW.match(sentence[m.end():].lstrip())))
    for rx, by_police in ((st.POLICE_OBJECT, True), (st.CAPTURE_OBJECT, False)):
        for m in rx.finditer(sentence):
            if not st._active(sentence, m.start()) or re.match(r"\s+by\b", sentence[m.end():]):
                continue
            agents = st.group_before(found, sentence, m.start())
            by_law = by_police or any(a in cast.heroes for a in agents)
            if agents and not by_law and all(a in cast.villains for a in agents):
                mark(st.group_after(found, sentence, m.end()), st.TRAPPED)
            else:
                captured(st.group_after(found, sentence, m.end()), by_law)
    for m in st.TAKEN_AWAY.finditer(sentence):
        if st._active(sentence, m.start()):
            mark(st.group_after(found, sentence, m.start("obj"), m.end("obj")), st.CAUGHT)
    for m in st.TRAP_SUBJECT.finditer(sentence):
        mark([n for n in st.group_before(found, sentence, m.start()) if out.get(n) != st.CAUGHT], st.TRAPPED)
    for m in st.TRAP_OBJECT.finditer(sentence):
        if st._active(sentence, m.start()):
            mark(st.group_after(found, sentence, m.start("obj"), m.end("obj")), st.TRAPPED)
    for m in st.ABSENT_SUBJECT.finditer(sentence):
        mark(st.group_before(found, sentence, m.start()), st.ABSENT)
    for m in st.ESCAPE_SUBJECT.finditer(sentence):
        if st.done_at(sentence, m.start()):
            mark(st.group_before(found, sentence, m.start()), st.FREE)
    for m in st.ESCAPE_OBJECT.finditer(sentence):
        group = "obj" if m.group("obj") is not None else "out"
        if st._active(sentence, m.start()):
            mark(st.group_after(found, sentence, m.start(group), m.end(group)), st.FREE)
    if st.TRAP_UNDONE.search(sentence):
        mark([n for n, s in statuses.items() if s == st.TRAPPED], st.FREE)
    for m in st.RETURN.finditer(sentence):
        if st.done_at(sentence, m.start()):
            mark([n for n in st.group_before(found, sentence, m.start()) if statuses.get(n) == st.ABSENT
                  and out.get(n) in (None, st.ABSENT)], st.FREE)
    return out


def old_track(sentences, cast):
    statuses = {}
    for sentence in sentences:
        for name, status in old_told(sentence, cast, statuses).items():
            if status == st.FREE:
                statuses.pop(name, None)
            else:
                statuses[name] = status
    return statuses


def old_pronouns(story, lore, own):
    entries = {**lore.characters, **lore.villains}
    aliases = [a for e in entries.values() for a in (e.get("aliases") or ())] + sorted(own)
    if not aliases:
        return {}, None
    people = name_pattern(aliases)
    out = {name: (name_pattern(e.get("aliases") or (name,)), e["pronoun"]) for name, e in entries.items()
           if e.get("pronoun") in ("he", "she")}
    known = {a for e in entries.values() for a in (e.get("aliases") or ())}
    sentences = split_sentences(story) if story.strip() else []
    for name in sorted(own - known - {w for a in known for w in a.split()}):
        pattern = name_pattern([name])
        pronoun = pronoun_of(pattern, sentences, people, at_least=1)
        if pronoun:
            out[name] = (pattern, pronoun)
    return out, people


def old_lead_name(story, lore):
    counts = {}
    for word in nameslib.name_words(story):
        if word not in lore.cast:
            counts[word] = counts.get(word, 0) + 1
    return max(counts, key=lambda w: counts[w]) if counts else None


def old_invented(earlier, lore, writer_names):
    if not lore.villains:  # a lore that knows no villain cannot tell the show's names from the model's
        return frozenset()
    mine = {w for n in writer_names for w in (n, *nameslib.name_words(n))}
    known = lore.vocabulary | lore.cast | {w for section in (lore.characters, lore.villains, lore.places, lore.gadgets)
                                           for name, e in section.items()
                                           for a in (e.get("aliases") or (name,)) for w in nameslib.name_words(a)}
    return frozenset(n for n in nameslib.names(earlier) if n not in mine and n not in known and n not in TITLE_WORDS)


def old_bible(story, lore, case_villains, henchmen, writer_names):
    """A Bible whose readings are the old whole-text ones (its breaks are the same code)."""
    old = object.__new__(Bible)
    old.lore = lore
    old.villains = set(villains_in(story + " " + " ".join(case_villains), lore)) if lore.villains else set()
    own = nameslib.names(story) | nameslib.names(" ".join(case_villains))
    known = {w.casefold() for w in (lore.vocabulary | own)} | {g.casefold() for g in lore.gadgets}
    old.bat_words_known = tuple(k.replace("-", "") for k in known
                                if k.startswith(BAT_PREFIX) and len(k) >= MIN_BAT_WORD - 1)
    old.pronouns, old.people = old_pronouns(story, lore, own)
    old.cast = st.cast_of(lore, case_villains, henchmen, own)
    old.statuses = old_track(split_sentences(story) if story.strip() else [], old.cast)
    old.invented = old_invented(story, lore, writer_names)
    return old


# ---------------------------------------------------------------- the stories
def episodes() -> list[str]:
    if not SHARED_CORPUS.exists():
        pytest.skip("no shared corpus")
    return split_text_into_episodes(SHARED_CORPUS.read_text(encoding="utf-8"))[:MAX_EPISODES]


def eval_stories() -> list[str]:
    data = json.loads((ROOT / "batplots/data/stories.json").read_text())
    return [" ".join(s["turns"]) for s in data["stories"]]


def grown(text: str) -> list[str]:
    """text's prefixes, a passage longer each (cut anywhere: mid-sentence, mid-word)."""
    return [text[:end] for end in range(PASSAGE_CHARS, len(text), PASSAGE_CHARS)] + [text]


@pytest.fixture(scope="module")
def lore() -> Lore:
    return load_lore(ADAPTERS_DIR / "batman66")


def check(story: str, lore: Lore) -> None:
    for case in ((), CASE_VILLAINS):
        henchmen = CASE_HENCHMEN if case else ()
        new = Bible(story, lore, case, (), henchmen, writer_names=WRITER_NAMES)
        old = old_bible(story, lore, case, henchmen, WRITER_NAMES)
        assert new.villains == old.villains
        assert {n: (p.pattern, s) for n, (p, s) in new.pronouns.items()} == {
            n: (p.pattern, s) for n, (p, s) in old.pronouns.items()}
        assert (new.people.pattern if new.people else None) == (old.people.pattern if old.people else None)
        # (the pattern's alternatives of one length come in a set's order: compared as aliases)
        assert (new.cast.aliases, new.cast.villains, new.cast.heroes) == (old.cast.aliases, old.cast.villains,
                                                                          old.cast.heroes)
        assert set(new.bat_words_known) == set(old.bat_words_known)  # a set's order, read by startswith
        assert list(new.statuses.items()) == list(old.statuses.items())
        assert new.invented == old.invented
        for probe in PROBES:
            assert [str(b) for b in new.breaks(probe)] == [str(b) for b in old.breaks(probe)], probe
    assert storyread.story_names(story) == nameslib.names(story)
    assert lead_name(story, lore) == old_lead_name(story, lore)
    assert storyread.sentences(story) == (split_sentences(story) if story.strip() else [])


def test_the_story_split_resumes_from_a_shorter_story_exactly():
    for text in [*eval_stories(), *episodes()[:10]]:
        for prefix in grown(text):
            assert list(storyread.split(prefix).sentences) == split_sentences(prefix)
    for tricky in ("Mr.", "Mr. Freeze smiles.", 'He says "Stop!', 'He says "Stop!" Then', "(An aside.", "Go!!",
                   "Go!! now", "Go.  ", "It ends…"):
        for cut in range(len(tricky) + 1):
            storyread.split(tricky[:cut])
            assert list(storyread.split(tricky).sentences) == split_sentences(tricky), tricky[:cut]


def test_the_bible_reads_each_corpus_episode_and_eval_story_as_the_whole_text_did(lore):
    for story in [*episodes(), *eval_stories()]:
        check(story, lore)


def test_a_story_grown_passage_by_passage_reads_as_the_whole_text_did(lore):
    story = " ".join(episodes()[:6])
    for prefix in grown(story)[::3]:
        check(prefix, lore)
    check("", lore)
    check("   ", lore)


def test_statuses_and_pronouns_of_the_writer_s_own_names_are_the_old_ones():
    lore = Lore({"Batman": 50}, characters={"Batman": {"count": 50, "aliases": ["Batman"], "pronoun": "he"}},
                villains={"Joker": {"count": 50, "aliases": ["Joker", "The Joker"], "pronoun": "he"}})
    story = ("Zelma Quill is arrested by Chief O'Hara. She sulks. Pemberton is tied to a giant clock. "
             "Batman cuts the ropes. O’Brien has left for London. O’Brien returns! Quill escapes from jail; "
             "she laughs. Pemberton, who is away, phones.")
    for cut in range(0, len(story) + 1, 7):
        check(story[:cut], lore)


def test_open_thread_and_lead_name_read_the_story_as_before(lore):
    for story in eval_stories():
        sentences = split_sentences(story)
        thread = open_thread(story)
        assert (thread.sentence if thread else None) in (None, sentences[-1].strip())
        assert lead_name(story, lore) == old_lead_name(story, lore)


def test_a_new_name_that_an_earlier_sentence_has_inside_a_word_reads_that_sentence_again():
    lore = Lore({"Batman": 50}, characters={"Batman": {"count": 50, "aliases": ["Batman"], "pronoun": "he"}},
                villains={"Joker": {"count": 50, "aliases": ["Joker", "The Joker"], "pronoun": "he"}})
    story = "Zed's pal O'Quill waves; he smiles. Batman nods. " * 20
    for more in ("", "Quill arrives. She laughs. ", "Quill is arrested by Batman. ", "Pal-Zed escapes! He runs. "):
        story += more
        check(story, lore)
        check(story + "Zed", lore)  # an unfinished tail
