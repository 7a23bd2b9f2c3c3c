"""How much the story explains a take (batplots.story.pmi): the engines' scoring of given
text under a given prompt, on tiny real models (llama.cpp and transformers), and a
ranking in which that score changes the winner."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from batplots.model.engine import Settings
from batplots.model.engine.transformers_engine import TransformersEngine
from batplots.story import pmi as pmilib
from batplots.story.ranking import pmi_decided, why
from batplots.story.take import take_seeds
from batplots.story.writer import Writer
from tests import tiny
from tests.test_writer import LORE, STORY, Scripted, script_for
from tests.tiny_gguf import write_gguf

CONTEXT = "Batman and Robin slide down the Batpoles."
TAIL = " The Joker laughs at the museum."
# f32 weights both sides; llama.cpp keeps K/V in f16 (as test_llama_engine's logits check).
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def hf():
    return TransformersEngine(tiny.trained_llama(), tiny.tokenizer(), label="tiny")


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from batplots.model.engine.llama_engine import LlamaEngine

    eng = LlamaEngine(write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("pmi") / "tiny.gguf"), label="tiny",
                      n_ctx=2048, n_slots=8)
    yield eng
    eng.close()


def _by_hand(model, ids: list[int], tail: list[int]) -> list[float]:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids + tail])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[len(ids) - 1 + k, t]) for k, t in enumerate(tail)]


def test_transformers_scores_are_the_continuations_log_probabilities(hf):
    ids, tail = hf.encode(CONTEXT), hf.encode(TAIL)
    (got,) = hf.continuation_logprobs([(CONTEXT, TAIL)])
    assert len(got) == len(tail) and all(x < 0 for x in got)
    assert np.allclose(got, _by_hand(tiny.trained_llama(), ids, tail), atol=1e-4)


def test_llama_scores_match_the_transformers_engine(llama, hf):
    pairs = [(CONTEXT, TAIL), ("", TAIL), (CONTEXT + TAIL, " Alfred serves tea in the study.")]
    for got, want in zip(llama.continuation_logprobs(pairs), hf.continuation_logprobs(pairs)):
        assert len(got) == len(want) and np.abs(np.array(got) - np.array(want)).max() < TOLERANCE


def test_pairs_scored_together_give_what_each_gives_alone(llama):
    pairs = [(CONTEXT, TAIL), (CONTEXT, " Robin cries."), ("The Riddler leaves a clue.", TAIL)]
    together = llama.continuation_logprobs(pairs)
    for pair, got in zip(pairs, together):
        llama.reset_cache()
        assert np.abs(np.array(got) - np.array(llama.continuation_logprobs([pair])[0])).max() < TOLERANCE


def test_an_empty_continuation_scores_nothing(llama, hf):
    assert llama.continuation_logprobs([(CONTEXT, "")]) == [[]]
    assert hf.continuation_logprobs([(CONTEXT, "")]) == [[]]


def test_after_a_generation_the_cached_story_is_reused_and_the_numbers_do_not_change(llama):
    llama.reset_cache()
    story = CONTEXT + " The Riddler leaves a clue at the bank. Commissioner Gordon picks up the red phone."
    text = "".join(llama.pieces(story, Settings(temperature=0, max_new_tokens=8), 1, None))
    reused = llama.scheduler.prompt_tokens_reused
    (warm,) = llama.continuation_logprobs([(story, text)])
    assert llama.scheduler.prompt_tokens_reused - reused >= llama.count_tokens(story) - 1  # only the take is read
    llama.reset_cache()
    (cold,) = llama.continuation_logprobs([(story, text)])
    assert len(warm) == llama.count_tokens(text) and np.abs(np.array(warm) - np.array(cold)).max() < TOLERANCE
    # the same numbers as the engine's full-logits scoring path
    ids, tail = llama.encode(story), llama.encode(text)
    logits = llama.logits(ids + tail).astype(np.float64)
    rows = logits[len(ids) - 1:-1]
    lse = rows.max(1) + np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1))
    assert np.abs(rows[np.arange(len(tail)), tail] - lse - np.array(cold)).max() < TOLERANCE


def test_a_generation_after_scoring_is_unchanged(llama):
    settings = Settings(temperature=0.8, max_new_tokens=12)
    llama.reset_cache()
    before = "".join(llama.pieces(CONTEXT, settings, 5, None))
    llama.continuation_logprobs([(CONTEXT, before), (pmilib.NEUTRAL_STORY, before)])
    assert "".join(llama.pieces(CONTEXT, settings, 5, None)) == before


def test_pmi_is_the_mean_per_token_gain_from_the_story():
    assert pmilib.pmi([-1.0, -2.0], [-2.0, -4.0]) == 1.5
    assert pmilib.pmi([], []) is None and pmilib.pmi([-1.0], [-1.0, -2.0]) is None


def test_the_prompts_are_the_takes_own_and_the_same_frame_around_a_neutral_sentence():
    engine = Scripted(["Robin waits."])
    framer = lambda story: "[Villain: The Riddler]\n" + story + " [Next: batcave]"  # noqa: E731
    with_story, without = pmilib.prompts(engine, STORY, Settings(), framer)
    assert with_story == framer(STORY) and without == framer(pmilib.NEUTRAL_STORY)
    assert pmilib.prompts(engine, STORY, Settings(), None) == (STORY, pmilib.NEUTRAL_STORY)
    # an engine that cannot score (a remote server): no pmi, nothing breaks
    assert pmilib.take_pmis(engine, STORY, Settings(), None, [" Robin waits."]) == [None]


def test_the_writer_scores_every_takes_pmi_only_when_asked(llama):
    settings = Settings(seed=2, sentences=1, copy_limit=0, max_new_tokens=40)
    story = "Batman and Robin slide down the Batpoles."
    plain = Writer(llama, lore=LORE, takes=3, pmi_weight=None).run(story, settings)
    assert all(c["pmi"] is None and c["pmi_points"] == 0.0 for c in plain.candidates)
    shown = Writer(llama, lore=LORE, takes=3, pmi_weight=0.0).run(story, settings)
    assert all(isinstance(c["pmi"], float) and math.isfinite(c["pmi"]) for c in shown.candidates)
    assert all(c["pmi_points"] == 0.0 for c in shown.candidates)  # shown, not counted
    counted = Writer(llama, lore=LORE, takes=3, pmi_weight=1.0).run(story, settings)
    assert all(c["pmi_points"] == pytest.approx(c["pmi"], abs=1e-3) for c in counted.candidates)


class Explained(Scripted):
    """A scripted engine that also scores: each token of a take that says a word of the
    story gains `gain` nats from the story; everything else scores -1 a token."""

    def __init__(self, script, gain):
        super().__init__(script)
        self.gain = gain

    def continuation_logprobs(self, pairs):
        out = []
        for context, text in pairs:
            explained = pmilib.NEUTRAL_STORY not in context and "clock" in text
            out.append([-1.0 + (self.gain if explained else 0.0)] * len(text.split()))
        return out


def test_how_much_the_story_explains_a_take_changes_the_winner_and_says_so():
    # Two takes alike in names and length; the scripted log-probability favours one, the
    # story explains the other (it picks up the story's clock).
    seed = next(s for s in range(1, 100) if len({t % 3 for t in take_seeds(s, 2)}) == 2)
    likelier = min(range(2), key=lambda i: take_seeds(seed, 2)[i] % 3)  # Scripted: -1 - 0.1 * (seed % 3)
    texts = ["Robin yawns at the moon."] * 2
    texts[1 - likelier] = "Robin yawns at the clock."
    settings = Settings(seed=seed, sentences=1, copy_limit=0)
    engine = Explained(script_for(seed, texts), gain=0.5)
    current = Writer(engine, lore=LORE, takes=2, pmi_weight=None).run(STORY, settings)
    assert current.text == " Robin yawns at the moon." and "story explains" not in current.why
    ranked = Writer(engine, lore=LORE, takes=2, pmi_weight=2.0).run(STORY, settings)
    assert ranked.text == " Robin yawns at the clock."
    best, other = ranked.candidates
    assert best["pmi"] == 0.5 and other["pmi"] == 0.0 and best["pmi_points"] == 1.0
    assert pmi_decided(best, [other]) and "the story explains it better (+0.50 nats a token against +0.00)" in ranked.why
    # Scored but weighed 0: the pmi is shown and decides nothing.
    shown = Writer(engine, lore=LORE, takes=2, pmi_weight=0.0).run(STORY, settings)
    assert shown.text == current.text and {c["pmi"] for c in shown.candidates} == {0.0, 0.5}
    assert "story explains" not in why(shown.candidates[0], shown.candidates[1:])


# --- the blind-reading benchmark (benchmarks/pmi_blind.py, blind_bases make --differing) ---------
def test_pmi_choice_reranks_the_recorded_takes():
    from benchmarks.pmi_blind import pmi_choice

    takes = [{"take": 0, "score": 2.0, "pmi": 0.1}, {"take": 1, "score": 1.5, "pmi": 0.4},
             {"take": 2, "score": 1.0, "pmi": None}]
    assert pmi_choice(takes, 0.0) == 0 and pmi_choice(takes, 1.0) == 0 and pmi_choice(takes, 3.0) == 1


def test_pairs_of_only_the_differing_passages(tmp_path):
    import json

    from benchmarks import blind_bases

    def run(name, texts):
        rows = [{"n": n, "opening": f"Opening {n}.", "text": t} for n, t in enumerate(texts, 1)]
        (tmp_path / f"{name}.json").write_text(json.dumps({"base": name, "passages": rows}))
        return tmp_path / f"{name}.json"

    current = run("current", ["same one.", "old two.", "same three.", "old four."])
    ranked = run("pmi", ["same one.", "new two.", "same three.", "new four."])
    assert blind_bases.make(current, ranked, tmp_path / "blind", differing=True) == 0
    key = json.loads((tmp_path / "blind" / "key.json").read_text())
    assert [k["n"] for k in key] == [2, 4]
    pairs = (tmp_path / "blind" / "pairs.md").read_text()
    assert "same one" not in pairs and "new two" in pairs and pairs.startswith(blind_bases.HEADER)


def test_the_why_line_compares_with_the_take_pmi_beat_not_the_best_explained():
    def take(n, score, pmi, weight=3.0):
        return {"take": n, "score": round(score + weight * pmi, 3), "pmi": pmi, "pmi_points": round(weight * pmi, 3),
                "own_names": [], "near_misses": [], "copies": 0, "words": [20], "mean_logprob": -2.0}

    # without the pmi take 0 wins; take 2 is explained most but still loses
    winner, beaten, third = take(1, 1.24, 0.66), take(0, 1.27, 0.42), take(2, 0.97, 0.74)
    line = why(winner, [third, beaten])
    assert "the story explains it better (+0.66 nats a token against +0.42)" in line


# --- the "with the story" half recorded while sampling (Passage.story_logprobs) ----------------
TWO_SENTENCES = Settings(sentences=2, copy_limit=0, max_new_tokens=60)


def _recorded(engine, story, seed):
    from batplots.model.engine.base import Guidance
    from batplots.story.passage import Passage

    passage = Passage(engine, story, replace(TWO_SENTENCES, seed=seed), guidance=Guidance(logprobs=[], tokens=[]))
    for _ in passage:
        pass
    return passage


@pytest.mark.parametrize("which", ["llama", "hf"])
def test_the_log_probabilities_recorded_while_sampling_are_the_scored_ones(which, request):
    engine = request.getfixturevalue(which)
    story = CONTEXT + " The Joker laughs at the museum."
    lined_up = 0
    for seed in range(12):
        engine.reset_cache()
        passage = _recorded(engine, story, seed)
        if passage.story_logprobs is None:
            continue
        lined_up += 1
        (scored,) = engine.continuation_logprobs([(story, passage.result.text)])
        assert len(scored) == len(passage.story_logprobs)
        assert np.abs(np.array(scored) - np.array(passage.story_logprobs)).max() < TOLERANCE
    assert lined_up >= 6  # most passages' tokens line up (the rest are scored)


def test_tokens_that_do_not_line_up_with_the_texts_own_are_not_used(llama):
    from batplots.story.passage import story_logprobs

    sentence = "Robin waits in the Batcave."
    own = llama.encode(" " + sentence)
    assert story_logprobs(llama, CONTEXT, " ", [sentence], [[(t, -1.0) for t in own + own[:2]]]) == [-1.0] * len(own)
    # the model spelled it in other pieces than the tokenizer would
    spelled = [t for c in " " + sentence for t in llama.encode(c)]
    assert spelled != own
    assert story_logprobs(llama, CONTEXT, " ", [sentence], [[(t, -1.0) for t in spelled]]) is None
    # cleaning changed the text (a lowercase start made capital): the sampled tokens are not its
    lower = llama.encode(" robin waits in the Batcave.")
    assert story_logprobs(llama, CONTEXT, " ", [sentence], [[(t, -1.0) for t in lower]]) is None
    # nothing recorded (an engine that does not record): scored
    assert story_logprobs(llama, CONTEXT, " ", [sentence], [[]]) is None


def test_the_writer_scores_only_the_neutral_half_and_picks_the_full_computations_winner(llama):
    story = "Batman and Robin slide down the Batpoles. The Joker laughs at the museum."
    calls = []
    score = llama.continuation_logprobs

    def counting(pairs):
        calls.append(pairs)
        return score(pairs)

    llama.continuation_logprobs = counting
    try:
        for seed in range(4):
            runs = []
            for from_sampling in (True, False):
                writer = Writer(llama, lore=LORE, takes=3, pmi_weight=3.0)
                writer.pmi_from_sampling = from_sampling
                llama.reset_cache()
                calls.clear()
                take = writer.stream(story, Settings(seed=seed, sentences=1, copy_limit=0, max_new_tokens=40))
                for _ in take:
                    pass
                runs.append((take, [p for pairs in calls for p in pairs]))
            (free, free_pairs), (full, full_pairs) = runs
            n = len(free.result.candidates)
            assert len(free_pairs) == 2 * n - free.pmi_recorded and free.pmi_recorded >= 1
            assert sum(pmilib.NEUTRAL_STORY in context for context, _ in free_pairs) == n
            assert len(full_pairs) == 2 * len(full.result.candidates)
            # Which takes are ranked can differ between two runs (a straggler is dropped by
            # tokens sampled so far, which the scheduler may run ahead of): compare the same ones.
            texts = lambda t: {c["take"]: c["text"] for c in t.result.candidates}  # noqa: E731
            common = texts(free).keys() & texts(full).keys()
            assert all(texts(free)[k] == texts(full)[k] for k in common)
            pmis = {c["take"]: c["pmi"] for c in full.result.candidates}
            for c in free.result.candidates:
                if c["take"] in common:
                    assert c["pmi"] == pytest.approx(pmis[c["take"]], abs=TOLERANCE)
            # The free run's takes ranked with the full computation's pmi: the same winner (the
            # rest of a score may differ between runs: the mean log-probability counts
            # tokens the scheduler sampled ahead)
            if texts(free).keys() <= texts(full).keys():
                again = max(free.result.candidates,
                            key=lambda c: (c["score"] - c["pmi_points"] + 3.0 * pmis[c["take"]], -c["take"]))
                assert again["text"] == free.result.candidates[0]["text"]
    finally:
        del llama.continuation_logprobs


def test_a_take_whose_tokens_line_up_only_in_part_is_scored_only_from_there(llama):
    story = CONTEXT + " The Joker laughs at the museum."
    ids = llama.encode(" Robin waits in the Batcave.")
    from batplots.story.passage import story_logprobs

    # the last sampled token was another one, as when a sentence ends inside a token (".\n")
    recorded = [(t, -1.0) for t in ids[:-1]] + [(ids[-1] + 1, -1.0)]
    kept = story_logprobs(llama, story, " ", ["Robin waits in the Batcave."], [recorded])
    assert kept == [-1.0] * (len(ids) - 1)
    # take_pmis scores the one missing token after the story and the rest from the record
    (full,) = llama.continuation_logprobs([(story, " Robin waits in the Batcave.")])
    calls = []
    score = llama.continuation_logprobs
    llama.continuation_logprobs = lambda pairs: calls.append(pairs) or score(pairs)
    try:
        (got,) = pmilib.take_pmis(llama, story, Settings(), None, [" Robin waits in the Batcave."], [full[:-1]])
    finally:
        del llama.continuation_logprobs
    (with_pair, without_pair), = calls
    assert with_pair == (story + " Robin waits in the Batcave", ".") and without_pair[0] == pmilib.NEUTRAL_STORY
    (neutral,) = score([(pmilib.NEUTRAL_STORY, " Robin waits in the Batcave.")])
    assert got == pytest.approx(pmilib.pmi(full, neutral), abs=TOLERANCE)


def test_one_seed_ranks_its_takes_alike_in_every_run(llama):
    """The ranking reads what each take's sentence loop read, not what the scheduler
    sampled ahead (a count that depends on timing): a seed's takes score, count and win
    alike run after run."""
    settings = Settings(seed=5, sentences=2, copy_limit=0, max_new_tokens=40)
    story = "The Joker hides a bomb in the Gotham Museum. Batman and Robin race to the museum."
    runs = []
    for _ in range(3):
        llama.reset_cache()
        result = Writer(llama, lore=LORE, takes=3).run(story, settings)
        runs.append([(c["take"], c["text"], c["tokens"], c["mean_logprob"]) for c in result.candidates])
    assert runs[0] == runs[1] == runs[2]
    assert all(tokens > 0 for _, _, tokens, _ in runs[0])
