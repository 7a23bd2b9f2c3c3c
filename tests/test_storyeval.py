"""Story metrics (batplots.measure.storyeval) on passages whose text the test chooses."""

from __future__ import annotations

from batplots.measure import storyeval
from batplots.corpus.episodes import Episode
from batplots.model.engine.base import Continuation, Settings
from batplots.corpus.index import CorpusIndex

STORIES = [{"villain": "Pendulum", "turns": ["The Pendulum steals the clock of Gotham City Hall.",
                                             "Commissioner Gordon calls Batman."]}]
OPENINGS = ["Chief O'Hara finds a purple feather at the Gotham Museum."]

# A corpus sentence of 31 words with capitals, quotes, a dash and an apostrophe, as
# plot summaries write them (written for this test), and a paraphrase of it.
VERBATIM = ("Meanwhile, at Wayne Manor, Alfred discovers that the Riddler's latest clue — \"What has keys "
            "but opens no doors?\" — points to the Gotham Philharmonic, where Batman and Robin must hurry "
            "before midnight.")
PARAPHRASE = ("Back at the mansion, the butler realises that the Riddler's newest puzzle leads to the concert "
              "hall, so the Dynamic Duo race there before the clock strikes twelve.")
COPY_EPISODES = [Episode(title="The Riddler's Symphony", plot="The Riddler escapes from prison. " + VERBATIM
                         + " The Dynamic Duo find him in the orchestra pit."),
                 Episode(title="Penguin Goes Straight", plot="The Penguin opens a protection agency.")]


def scripted(texts):
    """write() that answers with texts in order (one sentence each)."""
    queue = list(texts)

    def write(story, settings, beat, writer_text):
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

    def write(story, settings, beat, writer_text):
        asked.append(beat)
        text = "Robin yawns." if beat is None else plays[beat]
        return Continuation(text=" " + text, sentences=[text], settings=settings, seconds=0.1)

    passages = storyeval.measure(write, OPENINGS, STORIES, Settings(sentences=1), frozenset(), frozenset())
    assert asked == [None, beat0, beat1]  # openings draw none
    assert [p.beat_drawn for p in passages] == [None, beat0, beat1]
    assert [p.beat_played for p in passages[1:]] == [beat0, beat1]
    assert storyeval.metrics(passages, None, 1)["beat_played"] == 1.0


def copy_passage(text):
    return storyeval.Passage(kind="story", item=0, turn=0, text=" " + text, sentences=[text], seconds=0.1)


def test_copied_ngrams_count_a_verbatim_corpus_sentence_and_not_its_paraphrase():
    index = CorpusIndex(COPY_EPISODES)
    copied = storyeval.metrics([copy_passage(VERBATIM)], index, sentences=1)
    assert copied["copied_ngrams"] == copied["ngrams"] == 31 - storyeval.NGRAM + 1
    paraphrased = storyeval.metrics([copy_passage(PARAPHRASE)], index, sentences=1)
    assert paraphrased["copied_ngrams"] == 0 and paraphrased["ngrams"] == 28 - storyeval.NGRAM + 1
    both = storyeval.metrics([copy_passage(VERBATIM), copy_passage(PARAPHRASE)], index, sentences=1)
    assert (both["copied_ngrams"], both["ngrams"]) == (24, 24 + 21)
    assert "| copied 8-grams | 24 |" in storyeval.format_table({"adapter": both})
