"""The Writer: ranked takes, names that stay put, resampled near misses and sprawl.

A scripted backend (the model is beside the point) says a sentence chosen by the
take's seed, so each take's text is known; the batching, bias and log-probabilities
are checked on a real llama.cpp engine over a tiny GGUF model."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from batplots.model.engine import Settings
from batplots.story.passage import consume
from batplots.model.engine.base import Cancelled, Engine, Guidance, Rewind
from batplots.story.lore import Lore, lore_from_text
from batplots.story.ranking import MAX_SENTENCE_WORDS, score_take
from batplots.story.brief import brief_for
from batplots.story.take import take_seeds
from batplots.story.writer import BEAT_BIAS, BEAT_TRIES, LEAD_BIAS, Writer
from tests import tiny
from tests.tiny_gguf import write_gguf

STORY = "The Pendulum steals the great clock of Gotham City Hall."
LORE = Lore({"Batman": 200, "Robin": 120, "Gotham": 50, "City": 30, "Hall": 7, "Gordon": 50})


class Scripted(Engine):
    """Says script[seed % len(script)], a word a token; records the guidance it got."""

    name = "scripted"

    def __init__(self, script, delay=0.0):
        super().__init__()
        self.lock = threading.BoundedSemaphore(8)  # takes run together, as on the llama engine
        self.script, self.delay = script, delay
        self.guidance: list[Guidance | None] = []

    def count_tokens(self, text):
        return len(text.split())

    def encode(self, text):
        return [hash(w) % 50_000 for w in text.split()]

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        self.guidance.append(guidance)
        words = self.script[seed % len(self.script)].split()
        for k, word in enumerate(words[:settings.max_new_tokens]):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if guidance is not None and guidance.logprobs is not None:
                guidance.logprobs.append(-1.0 - 0.1 * (seed % 3))
            if self.delay:
                threading.Event().wait(self.delay)
            yield (" " if k else "") + word


def script_for(seed, texts):
    """A script in which take i (of len(texts)) of a passage seeded `seed` says texts[i]."""
    seeds = take_seeds(seed, len(texts))
    size = 1000
    script = ["Batman yawns."] * size
    for s, text in zip(seeds, texts):
        assert script[s % size] == "Batman yawns.", "two takes share a script line: pick another seed"
        script[s % size] = text
    return script


def test_the_take_that_keeps_the_writers_villain_wins_and_says_why():
    texts = ["Batman and Robin drive to the museum.", "Robin finds a clue.",
             "The Pendulum laughs in his tower.", "Gordon calls again."]
    writer = Writer(Scripted(script_for(7, texts)), lore=LORE, takes=4)
    result = writer.run(STORY, Settings(seed=7, sentences=1, copy_limit=0))
    assert result.text == " " + texts[2]
    assert [c["take"] for c in result.candidates][0] == 2 and result.candidates[0]["chosen"]
    assert len(result.candidates) == 4 and sum(c["chosen"] for c in result.candidates) == 1
    assert result.candidates[0]["own_names"] == ["Pendulum"]
    assert "keeps your name Pendulum" in result.why and result.why.startswith("best of 4 takes")


def test_the_first_take_streams_and_a_rewind_brings_the_winner():
    texts = ["Robin yawns at the clock.", "The Pendulum swings again."]
    writer = Writer(Scripted(script_for(3, texts)), lore=LORE, takes=2)
    take = writer.stream(STORY, Settings(seed=3, sentences=1, copy_limit=0))
    events = list(take)
    assert "".join(e for e in events if isinstance(e, str)).startswith(" Robin yawns")
    assert events[-1] == Rewind(" The Pendulum swings again.")
    assert take.result.text == " The Pendulum swings again."
    draft, result = consume(_replay(events, take.result))
    assert draft == result.text  # what a client shows is the winner


class _replay:
    """Recorded events played back as a Take would give them."""

    def __init__(self, events, result):
        self.events, self.result = events, result

    def __iter__(self):
        return iter(self.events)


def test_a_near_miss_name_is_resampled_like_a_copy():
    # One take: its first attempt mangles the villain's name, the resample does not.
    seeds = take_seeds(11, 1)
    script = ["Batman yawns."] * 1000
    script[seeds[0] % 1000] = "The Pendum laughs."
    writer = Writer(Scripted(script), lore=LORE, takes=1)
    result = writer.run(STORY, Settings(seed=11, sentences=1, copy_limit=0))
    assert "Pendum" not in result.text and result.text == " Batman yawns."
    note = result.candidates[0]["resampled"][0]
    assert note["kind"] == "near-miss" and note["names"] == ["Pendum (Pendulum)"]
    assert result.flags == []  # only copies are flags; the rest are notes on the candidate


def test_an_overlong_sentence_is_resampled():
    long = " ".join(["word"] * (MAX_SENTENCE_WORDS + 5)) + "."
    seeds = take_seeds(5, 1)
    script = ["Robin nods."] * 1000
    script[seeds[0] % 1000] = "Batman " + long
    result = Writer(Scripted(script), lore=LORE, takes=1).run(STORY, Settings(seed=5, sentences=1, copy_limit=0))
    assert result.text == " Robin nods."
    assert result.candidates[0]["resampled"][0]["kind"] == "long"


def test_guidance_biases_the_writers_own_names_and_exempts_every_story_name():
    engine = Scripted(["Batman yawns."])
    writer = Writer(engine, lore=LORE, takes=1)
    g = writer.guidance(STORY + " Batman sighs. Tick laughs.")
    own_first, tick = engine.encode(" Pendulum")[0], engine.encode(" Tick")[0]
    # The cast (Batman, Gotham...) is not biased; the lead name (used most) more than the others.
    assert g.step_bias("") == {own_first: LEAD_BIAS, tick: writer.name_bias}
    # A name's bias stops once the sentence has the name: no "Pendulum ... Pendulum's".
    assert g.step_bias("The Pendulum hides") == {tick: writer.name_bias}
    assert set(engine.encode(" Batman")) <= g.unpenalised and own_first in g.unpenalised
    writer.run(STORY, Settings(seed=1, sentences=1, copy_limit=0))
    assert engine.guidance[-1].step_bias("") == {own_first: LEAD_BIAS}


def test_cancel_stops_every_take():
    engine = Scripted(["Batman " + " ".join(["waits"] * 150) + "."], delay=0.01)
    cancel = threading.Event()
    take = Writer(engine, lore=LORE, takes=3).stream(STORY, Settings(seed=1, sentences=1, copy_limit=0), cancel)
    with pytest.raises(Cancelled):
        for i, _ in enumerate(take):
            if i == 3:
                cancel.set()
    assert not [t for t in threading.enumerate() if t.name.startswith("batplots-take-")]


def test_score_parts_are_transparent():
    from batplots.model.engine.base import Continuation

    result = Continuation(text=" The Pendum and Batman fight.", sentences=["The Pendum and Batman fight."],
                          settings=Settings())
    parts = score_take(STORY + " Batman arrives.", result, [-2.0, -1.0], LORE)
    assert parts["near_misses"] == ["Pendum"] and parts["own_names"] == [] and parts["cast_names"] == ["Batman"]
    assert parts["mean_logprob"] == -1.5 and parts["words"] == [5]


def test_lore_counts_names_and_calls_the_frequent_ones_cast():
    lore = lore_from_text("Batman runs. " * 6 + "The Pendulum waits.")
    assert lore.counts == {"Batman": 6, "Pendulum": 1} and lore.cast == {"Batman"}


# --- on a real llama.cpp engine -------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from batplots.model.engine.llama_engine import LlamaEngine

    eng = LlamaEngine(write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("w") / "tiny.gguf"), label="tiny",
                      n_ctx=2048, n_slots=8)
    yield eng
    eng.close()


def test_takes_are_decoded_together_and_carry_log_probabilities(llama):
    writer = Writer(llama, lore=LORE, takes=4)
    result = writer.run("Batman and Robin slide down the Batpoles.", Settings(seed=2, sentences=1, copy_limit=0,
                                                                             max_new_tokens=40))
    assert llama.scheduler.max_batch_requests >= 2  # several takes in one decode call
    assert 2 <= len(result.candidates) <= 4
    assert all(c["mean_logprob"] < 0 for c in result.candidates)


def test_a_logit_bias_steers_the_llama_engine(llama):
    token = llama.encode(" Robin")[0]
    plain = "".join(llama.pieces("Batman", Settings(temperature=0, max_new_tokens=6), 1, None))
    steered = "".join(llama.pieces("Batman", Settings(temperature=0, max_new_tokens=6), 1, None,
                                   Guidance(bias={token: 100.0})))
    assert steered == " Robin" * 6 and plain != steered


def test_a_step_bias_steers_the_llama_engine_until_it_is_done_and_logprobs_stay_raw(llama):
    robin = llama.encode(" Robin")[0]
    settings = Settings(temperature=0, max_new_tokens=6)
    asked: list[str] = []

    def until_robin(text: str) -> dict[int, float]:
        asked.append(text)
        return {} if "Robin" in text else {robin: 100.0}

    always = "".join(llama.pieces("Batman", settings, 1, None, Guidance(bias={robin: 100.0})))
    g = Guidance(logprobs=[], step_bias=until_robin)
    steered = "".join(llama.pieces("Batman", settings, 1, None, g))
    assert steered.startswith(" Robin") and steered != always  # pushed once, then left alone
    assert asked[0] == "" and asked[1] == " Robin"  # asked before each token with the text so far
    # The log-probability is the model's own, before the push.
    row = llama.logits(llama.encode("Batman"))[-1].astype(np.float64)
    raw = row[robin] - (row.max() + np.log(np.exp(row - row.max()).sum()))
    assert g.logprobs[0] == pytest.approx(raw, abs=0.05)


def test_a_long_winded_take_is_dropped_once_two_have_finished():
    texts = ["Robin nods.", "The Pendulum waits.", "Batman frowns.",
             "Gordon " + " ".join(["talks"] * 40) + "."]
    engine = Scripted(script_for(9, texts), delay=0.005)
    result = Writer(engine, lore=LORE, takes=4).run(STORY, Settings(seed=9, sentences=1, copy_limit=0))
    assert sorted(c["take"] for c in result.candidates) == [0, 1, 2]  # take 3 ran past GRACE x the quorum's tokens
    assert result.settings.seed == 9  # the passage's seed; each take's own is in its candidate
    assert result.text == " The Pendulum waits."


def test_a_passage_of_two_sentences_ranks_the_first_and_writes_on_from_the_winner():
    # take 0 and take 1 race for the first sentence; the third seed writes the second one.
    texts = ["Robin yawns at the clock.", "The Pendulum swings again.", "Batman follows him to the tower."]
    engine = Scripted(script_for(21, texts))
    take = Writer(engine, lore=LORE, takes=2).stream(STORY, Settings(seed=21, sentences=2, copy_limit=0))
    events = list(take)
    result = take.result
    assert result.text == " The Pendulum swings again. Batman follows him to the tower."
    assert result.sentences == ["The Pendulum swings again.", "Batman follows him to the tower."]
    assert consume(_replay(events, result))[0] == result.text  # the client's draft ends as the passage
    assert [c["text"] for c in result.candidates] == ["The Pendulum swings again.", "Robin yawns at the clock."]
    assert result.why.startswith("first sentence: best of 2 takes") and "then 1 more written on from it" in result.why
    whole = Writer(engine, lore=LORE, takes=2, staged=False).run(STORY, Settings(seed=21, sentences=2, copy_limit=0))
    assert len(whole.candidates) == 2 and not whole.why.startswith("first sentence")


def test_the_lead_name_is_the_writers_own_name_used_most():
    from batplots.story.ranking import lead_name

    assert lead_name("Batman frowns. The Pendulum waits. Tick runs. The Pendulum laughs.", LORE) == "Pendulum"
    assert lead_name("Batman and Robin sleep.", LORE) is None


def test_a_run_of_stop_marks_is_resampled():
    seeds = take_seeds(4, 1)
    script = ["Robin nods."] * 1000
    script[seeds[0] % 1000] = "Batman waits..........!!!!"
    result = Writer(Scripted(script), lore=LORE, takes=1).run(STORY, Settings(seed=4, sentences=1, copy_limit=0))
    assert result.text == " Robin nods." and result.candidates[0]["resampled"][0]["kind"] == "junk"


def test_the_sentence_end_nudge_never_stacks_stop_marks(llama):
    ends = llama.sentence_end_tokens()
    dot = llama.encode(".")[-1]
    assert dot in ends and llama.encode(" Robin")[0] not in ends
    nudged = list(llama.pieces("Batman", Settings(temperature=0, max_new_tokens=4), 1, None,
                               Guidance(end_tokens=ends, end_after=0, end_slope=100.0)))
    ids = [llama.encode(p)[-1] for p in nudged[:2]]
    assert ids[0] in ends  # the nudge ends the sentence at once...
    assert ids[1] not in ends  # ...and is off right after an end, so no "......" follows


def test_write_on_tries_again_when_a_mangled_name_survived_every_resample():
    seeds = take_seeds(31, 4)  # two takes, then two write-on attempts
    script = ["The Pendum laughs."] * 1000  # every resample mangles the villain's name...
    script[seeds[0] % 1000] = "Robin yawns."
    script[seeds[1] % 1000] = "The Pendulum swings."
    script[seeds[3] % 1000] = "Batman follows him."  # ...but the second write-on does not
    result = Writer(Scripted(script), lore=LORE, takes=2).run(STORY, Settings(seed=31, sentences=2, copy_limit=0))
    assert result.text == " The Pendulum swings. Batman follows him."


# ------------------------------------------------------------ the brief: case file and beats

CASE_STORY = "A thief robs the Gotham Gem Exchange at noon."


def test_the_case_files_villain_is_biased_kept_and_ranked_even_when_the_story_never_names_him():
    """The story names no villain; the case file says the Riddler (stock cast, so not
    biased as the writer's own name would be): the take naming him wins and says so."""
    texts = ["Batman and Robin drive to the museum.", "The Riddler laughs in his lair.",
             "Robin finds a clue.", "Gordon calls again."]
    engine = Scripted(script_for(11, texts))
    writer = Writer(engine, lore=Lore({**LORE.counts, "Riddler": 60}), takes=4)
    case = {"villains": ["The Riddler"], "henchmen": ["Molly"]}
    result = writer.run(CASE_STORY, Settings(seed=11, sentences=1, copy_limit=0), case=case)
    assert result.text == " " + texts[1]
    assert result.candidates[0]["lead_name"] == "Riddler" and "names Riddler" in result.why
    riddler = engine.encode(" Riddler")[0]
    assert all(g.step_bias("").get(riddler) == LEAD_BIAS for g in engine.guidance)  # the case's villain leads
    plain = Writer(Scripted(script_for(11, texts)), lore=Lore({**LORE.counts, "Riddler": 60}), takes=4)
    without = plain.run(CASE_STORY, Settings(seed=11, sentences=1, copy_limit=0)).candidates
    riddler_take = next(c for c in without if c["take"] == 1)
    assert riddler_take["lead_name"] is None  # without the case file he is just stock cast
    assert next(c for c in result.candidates if c["take"] == 1)["score"] > riddler_take["score"] + 0.9


def test_a_near_miss_of_a_case_file_name_is_resampled():
    writer = Writer(Scripted(["The Pendum strikes at dawn.", "Robin waits by the door."]), lore=LORE, takes=1)
    result = writer.run(CASE_STORY, Settings(seed=0, sentences=1, copy_limit=0), case={"villains": ["The Pendulum"]})
    assert result.sentences == ["Robin waits by the door."]


def test_a_requested_beat_biases_its_cues_and_wins_the_ranking():
    texts = ["Robin finds a clue at the museum.", "Batman and Robin slide into the Batcave to study the clue.",
             "Gordon calls again.", "The thief laughs."]
    engine = Scripted(script_for(5, texts))
    writer = Writer(engine, lore=LORE, takes=4)
    result = writer.run(CASE_STORY, Settings(seed=5, sentences=1, copy_limit=0), beat="batcave")
    assert result.text == " " + texts[1] and result.candidates[0]["beat"] == "batcave"
    assert "plays the beat you asked for (To the Batcave!)" in result.why
    cave = engine.encode(" Batcave")[0]  # one token in the scripted engine's vocabulary
    steer = engine.guidance[0].step_bias
    assert steer("").get(cave) == BEAT_BIAS
    # The push grows while the sentence has not played the beat, and stops once it has.
    assert steer("Robin waits by the door of the old").get(cave) > BEAT_BIAS
    assert cave not in steer("Robin slides into the Batcave")
    with pytest.raises(ValueError, match="unknown beat 'nap'; choose one of: crime, batphone"):
        writer.run(CASE_STORY, Settings(seed=5, sentences=1), beat="nap")


def test_a_deathtrap_turn_ends_with_the_narrators_cliffhanger_naming_the_villain():
    writer = Writer(Scripted(["The Riddler ties Batman to a giant clock hand."]), lore=LORE, takes=1)
    take = writer.stream(CASE_STORY, Settings(seed=2, sentences=1, copy_limit=0), case={"villains": ["The Riddler"]},
                         beat="deathtrap")
    draft, result = consume(take)
    assert draft == result.text and len(result.sentences) == 2
    assert "The Riddler" in result.sentences[1] and "Bat-" in result.sentences[1]
    assert "cliffhanger" in result.why


class InOrder(Scripted):
    """Says its script's sentences in call order, whatever the seed."""

    def __init__(self, script):
        super().__init__(script)
        self.calls = 0

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        self.prompts = getattr(self, "prompts", []) + [prompt]
        text = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return self._say(text, guidance)

    def _say(self, text, guidance):
        for k, word in enumerate(text.split()):
            if guidance is not None and guidance.logprobs is not None:
                guidance.logprobs.append(-1.0)
            yield (" " if k else "") + word


def test_a_first_sentence_off_the_asked_beat_is_resampled_a_bounded_number_of_times():
    engine = InOrder(["Robin yawns at the clock.", "Batman and Robin fight the henchmen: POW!", "Robin sleeps."])
    result = Writer(engine, lore=LORE, takes=1).run(CASE_STORY, Settings(seed=1, sentences=1, copy_limit=0),
                                                    beat="fight")
    assert result.sentences == ["Batman and Robin fight the henchmen: POW!"] and engine.calls == 2
    assert result.candidates[0]["resampled"][0]["kind"] == "off-beat"
    # Never more than BEAT_TRIES resamples for the beat: then the sentence stands.
    stubborn = InOrder(["Robin yawns at the clock."])
    result = Writer(stubborn, lore=LORE, takes=1).run(CASE_STORY, Settings(seed=1, sentences=1, copy_limit=0),
                                                      beat="fight")
    assert result.sentences == ["Robin yawns at the clock."] and stubborn.calls == 1 + BEAT_TRIES
    # A passage of several sentences is not held to the beat sentence by sentence.
    two = InOrder(["Robin yawns at the clock. And", "Gordon calls again. And"])  # each runs on: no early end
    result = Writer(two, lore=LORE, takes=1).run(CASE_STORY, Settings(seed=1, sentences=2, copy_limit=0), beat="fight")
    assert result.sentences == ["Robin yawns at the clock.", "Gordon calls again."]
    assert result.candidates[0]["resampled"] == []


def test_a_conditioned_writer_puts_the_case_files_header_and_the_beat_marker_in_the_prompt():
    from batplots.story import conditioning

    engine = InOrder(["Batman and Robin slide down the Batpoles to the Batcave.", "The Bat-computer hums."])
    writer = Writer(engine, lore=Lore({**LORE.counts}), takes=2, conditioned=True)
    writer.run(CASE_STORY, Settings(seed=1, sentences=2, copy_limit=0), case={"villains": ["The Riddler"]},
               beat="batcave")
    first, *rest = engine.prompts
    assert first.startswith(conditioning.header(["The Riddler"], [])) and first.endswith(" [Next: batcave]")
    assert CASE_STORY in first
    assert rest and not rest[-1].endswith("]") and rest[-1].startswith("[Villain: The Riddler")  # the write-on: no marker
    plain = InOrder(["Robin waits."])
    Writer(plain, lore=LORE, takes=1).run(CASE_STORY, Settings(seed=1, sentences=1), beat="batcave")
    assert plain.prompts[0] == CASE_STORY  # an adapter trained without control codes sees the story alone


def test_a_longer_beat_cue_is_pushed_only_once_the_model_has_begun_it(llama):
    """" Batcave" starts with " Bat" in SmolLM2's vocabulary (and in the tiny model's):
    a push on that first token filled passages with "Batbolt". Cues of one token are
    pushed from the start; a longer cue's next token once the text ends with its start."""
    from batplots.story.beats import BEAT_CUES

    writer = Writer(llama, lore=LORE, takes=1)
    for beat in ("batcave", "fight"):
        g = writer.guidance("the night is quiet.", brief_for(None, beat))  # no names: only cues
        forms = [f for c in BEAT_CUES[beat] for f in (" " + c, " " + c.lower(), c)]
        single = {llama.encode(f)[0] for f in forms if len(llama.encode(f)) == 1}
        assert set(g.step_bias("")) == single
        longer = [llama.encode(f) for f in forms if len(llama.encode(f)) > 1]
        assert longer  # the rule was put to the test
        ids = longer[0]
        start = next(f for f in forms if llama.encode(f) == ids)
        begun = next(start[:j] for j in range(1, len(start)) if llama.encode(start[:j]) == ids[:1])
        assert g.step_bias("Robin looks for the" + begun)[ids[1]] >= BEAT_BIAS