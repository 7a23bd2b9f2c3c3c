"""Story metrics (batplots.storyeval) on passages whose text the test chooses."""

from __future__ import annotations

from batplots import storyeval
from batplots.engine.base import Continuation, Settings

STORIES = [{"villain": "Pendulum", "turns": ["The Pendulum steals the clock of Gotham City Hall.",
                                             "Commissioner Gordon calls Batman."]}]
OPENINGS = ["Chief O'Hara finds a purple feather at the Gotham Museum."]


def scripted(texts):
    """write() that answers with texts in order (one sentence each)."""
    queue = list(texts)

    def write(story, settings):
        text = queue.pop(0)
        return Continuation(text=" " + text, sentences=[text], settings=settings, seconds=0.5)

    return write


def test_measure_and_metrics_count_names_villains_and_near_misses():
    texts = ["Batman studies the feather carefully.",  # opening: no name of the opening kept
             "The Pendulum laughs in Gotham City.",  # story turn 1: villain named, names kept
             "The Pendum swings at Batman " + "and waits " * 30 + "."]  # turn 2: mangled name, 65 words
    passages = storyeval.measure(scripted(texts), OPENINGS, STORIES, Settings(sentences=1), frozenset({"Batman"}),
                                 frozenset({"Batman", "Gotham"}))
    assert [(p.kind, p.turn) for p in passages] == [("opening", 0), ("story", 0), ("story", 1)]
    assert passages[1].villain_named and not passages[2].villain_named
    assert passages[2].near_misses == ["Pendum (Pendulum)"]
    m = storyeval.metrics(passages, None, sentences=1)
    assert m["names_kept_openings"] == 0 and m["villain_named"] == 0.5 and m["names_kept_stories"] == 1.0
    assert m["near_miss_names"] == 1 and m["words_per_sentence_max"] == 66 and m["exact_n_rate"] == 1.0
    t = storyeval.targets(m)
    assert t == {"names_kept_openings >= 50%": False, "villain_named >= 50%": True, "no near-miss names": False,
                 "words per sentence 18-25, none over 50": False}
    table = storyeval.format_table({"adapter": m})
    assert "| story passages naming the villain | 50% |" in table and "| near-miss names | 1 |" in table


def test_the_shipped_stories_open_with_their_villain():
    stories = storyeval.load_stories()
    assert len(stories) >= 10
    for s in stories:
        assert len(s["turns"]) == 4 and s["villain"] in s["turns"][0]
