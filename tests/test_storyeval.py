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

    def write(story, settings, beat):
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
                 "words per sentence 18-25, none over 50": False, "villain_named >= 70% (with the case file)": False,
                 "beat played >= 60% (when asked)": False}
    table = storyeval.format_table({"adapter": m})
    assert "| story passages naming the villain | 50% |" in table and "| near-miss names | 1 |" in table


def test_the_shipped_stories_open_with_their_villain():
    stories = storyeval.load_stories()
    assert len(stories) >= 10
    for s in stories:
        assert len(s["turns"]) == 4 and s["villain"] in s["turns"][0]


def test_story_turns_draw_a_beat_and_the_labeller_scores_the_first_sentence():
    """Each story turn draws one of the page's beats (the same draw in every run); a
    passage whose first sentence plays it counts, whichever run asked for it."""
    beat0, beat1 = storyeval.drawn_beat(0, 0), storyeval.drawn_beat(0, 1)
    assert beat0 in storyeval.BUTTON_BEATS and storyeval.drawn_beat(0, 0) == beat0
    asked = []
    plays = {"batphone": "Gordon lifts the red Batphone at headquarters.",
             "batcave": "In the Batcave, the Bat-computer decodes the riddle.",
             "fight": "Batman and Robin fight the henchmen: POW! BIFF!",
             "deathtrap": "The Pendulum straps Batman to a giant conveyor belt.",
             "escape": "Batman frees himself just in time."}

    def write(story, settings, beat):
        asked.append(beat)
        text = "Robin yawns." if beat is None else plays[beat]
        return Continuation(text=" " + text, sentences=[text], settings=settings, seconds=0.1)

    passages = storyeval.measure(write, OPENINGS, STORIES, Settings(sentences=1), frozenset(), frozenset())
    assert asked == [None, beat0, beat1]  # openings draw none
    assert [p.beat_drawn for p in passages] == [None, beat0, beat1]
    assert [p.beat_played for p in passages[1:]] == [beat0, beat1]
    assert storyeval.metrics(passages, None, 1)["beat_played"] == 1.0
