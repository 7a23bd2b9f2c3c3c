"""The continuation engine on tiny real models (Llama and GPT-2 configs built here)."""

import threading
from dataclasses import replace

import pytest

from batplots.model.engine import Cancelled, Rewind, Settings, SettingsError
from batplots.model.engine.base import Engine
from batplots.text import split_sentences
from batplots.story import passage as passagelib
from batplots.story.passage import Passage, consume, fit_story

STORY = "Batman and Robin slide down the Batpoles."


@pytest.fixture(params=["llama", "gpt2"])
def engine(request, tiny_engine, tiny_gpt2_engine):
    return tiny_engine if request.param == "llama" else tiny_gpt2_engine


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exactly_n_complete_sentences(engine, n):
    result = passagelib.run(engine, STORY, Settings(sentences=n, seed=7))
    assert len(result.sentences) == n
    assert split_sentences(result.text) == result.sentences
    assert result.text.startswith(" ") and not result.text.startswith("  ")
    assert not result.trimmed and result.stop_reason == "sentences"


def test_same_seed_same_text_and_different_seed_differs(engine):
    a = passagelib.run(engine, STORY, Settings(seed=11, temperature=1.0))
    b = passagelib.run(engine, STORY, Settings(seed=11, temperature=1.0))
    assert a.text == b.text
    others = {passagelib.run(engine, STORY, Settings(seed=s, temperature=1.0)).text for s in (12, 13, 14)}
    assert others - {a.text}


def test_no_seed_draws_one_and_reports_it(engine):
    result = passagelib.run(engine, STORY, Settings(temperature=1.0))
    assert result.settings.seed is not None
    again = passagelib.run(engine, STORY, replace(Settings(temperature=1.0), seed=result.settings.seed))
    assert again.text == result.text


def test_streaming_equals_non_streaming(engine):
    settings = Settings(sentences=3, seed=5)
    draft, streamed = consume(Passage(engine, STORY, settings))
    plain = passagelib.run(engine, STORY, settings)
    assert draft == streamed.text == plain.text
    assert streamed.first_piece_seconds is not None


def test_stream_pieces_are_incremental(engine):
    pieces = [p for p in Passage(engine, STORY, Settings(sentences=2, seed=3)) if isinstance(p, str)]
    assert len(pieces) > 2  # streamed, not one lump at the end
    assert all(isinstance(p, str) and p for p in pieces)


def test_empty_story_continues_without_leading_space(engine):
    result = passagelib.run(engine, "", Settings(sentences=1, seed=1))
    assert result.text and not result.text[0].isspace()


def test_story_ending_in_whitespace_is_not_changed(engine):
    story = STORY + "\n"
    result = passagelib.run(engine, story, Settings(sentences=1, seed=1))
    assert not result.text[0].isspace()


def test_left_truncation_keeps_whole_sentences(engine):
    story = " ".join(f"Sentence number {i} is here." for i in range(200))
    settings = Settings(sentences=1, seed=2, max_context=128, max_new_tokens=40)
    prompt, truncated = fit_story(engine, story, settings)
    assert truncated
    assert story.endswith(prompt) and prompt.startswith("Sentence number")
    assert engine.count_tokens(prompt) <= 128 - 40
    # Adding the previous sentence would no longer fit.
    before = story[: len(story) - len(prompt)].rstrip()
    previous = split_sentences(before)[-1]
    assert engine.count_tokens(previous + " " + prompt) > 128 - 40
    result = passagelib.run(engine, story, settings)
    assert result.truncated_story and len(result.sentences) == 1


def test_left_truncation_counts_only_the_storys_end_and_finds_what_counting_all_would(engine):
    """fit_story counts a window at the story's end (doubled while it fits), not the whole
    story a dozen times; its answer is the earliest sentence start whose suffix fits."""
    story = " ".join(f"Sentence number {i} says {'very ' * (i % 7)}little." for i in range(3000))
    counted = []
    count = engine.count_tokens
    engine.count_tokens = lambda text: counted.append(len(text)) or count(text)
    try:
        for max_context in (128, 512):
            settings = Settings(max_context=max_context, max_new_tokens=40)
            counted.clear()
            prompt, truncated = fit_story(engine, story, settings)
            assert truncated and sum(counted) < 40 * max_context * passagelib.WINDOW_CHARS_PER_TOKEN < len(story)
            previous = split_sentences(story[:len(story) - len(prompt)].rstrip())[-1]
            assert count(prompt) <= max_context - 40 < count(previous + " " + prompt)
    finally:
        engine.count_tokens = count
    # A story shorter than the window is counted once, whole.
    assert fit_story(engine, STORY, Settings()) == (STORY, False)


def test_short_story_is_not_truncated(engine):
    prompt, truncated = fit_story(engine, STORY, Settings())
    assert prompt == STORY and not truncated


class Scripted(Engine):
    """A backend that writes a fixed text, one character per token (the model is beside the point)."""

    name = "scripted"

    def __init__(self, text):
        super().__init__()
        self.text = text

    def count_tokens(self, text):
        return len(text)

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        # Go on from wherever the prompt already ends inside the script.
        script = self.text.strip()
        done = next((k for k in range(len(script), 0, -1)
                     if prompt.rstrip().endswith(script[:k].rstrip())), 0)
        rest = (" " if done else self.text[: len(self.text) - len(self.text.lstrip())]) + script[done:].lstrip()
        for ch in rest[: settings.max_new_tokens]:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            yield ch


def test_token_cap_trims_back_to_last_complete_sentence():
    engine = Scripted(" Batman runs. Robin keeps running and running and never stops")
    draft, result = consume(Passage(engine, "Go.", Settings(sentences=2, max_new_tokens=40, max_context=200)))
    assert result.sentences == ["Batman runs."]
    assert result.trimmed and result.stop_reason == "cap"
    assert result.text == " Batman runs." == draft


def test_trim_sends_a_rewind_of_the_cut_sentence():
    engine = Scripted(" Robin keeps running and running and never stops")
    events = list(Passage(engine, "Go.", Settings(sentences=1, max_new_tokens=30, max_context=200)))
    assert any(isinstance(e, Rewind) and e.text == "" for e in events)


def test_abbreviation_does_not_end_a_sentence_while_streaming():
    engine = Scripted(" Mr. Freeze waits at 3.5 degrees. Batman shivers. Robin too.")
    result = passagelib.run(engine, "Go.", Settings(sentences=2, max_context=400, max_new_tokens=100))
    assert result.sentences == ["Mr. Freeze waits at 3.5 degrees.", "Batman shivers."]


def test_dialogue_sentence_keeps_its_closing_quote():
    engine = Scripted(' "Holy haberdashery, Batman!" cries Robin. They go.')
    result = passagelib.run(engine, "Go.", Settings(sentences=1, max_context=400, max_new_tokens=100))
    assert result.sentences == ['"Holy haberdashery, Batman!" cries Robin.']


def test_backend_ending_early_keeps_a_finished_sentence():
    engine = Scripted(" Batman wins.")
    result = passagelib.run(engine, "Go.", Settings(sentences=3, max_context=400, max_new_tokens=100))
    assert result.sentences == ["Batman wins."] and result.stop_reason == "eos"


def test_cancel_stops_generation(engine):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        passagelib.run(engine, STORY, Settings(seed=1), cancel=cancel)
    # The engine still works afterwards (its cache was dropped cleanly).
    assert len(passagelib.run(engine, STORY, Settings(seed=1, sentences=1)).sentences) == 1


def test_sentence_check_resamples_rejected_sentences(engine):
    seen = []

    def reject_first_two(sentence):
        seen.append(sentence)
        return {"score": 10 - len(seen), "reason": "test"} if len(seen) <= 2 else None

    draft, result = consume(Passage(engine, STORY, Settings(sentences=1, seed=4, temperature=1.0),
                                          check=reject_first_two))
    assert len(seen) == 3 and result.sentences == [seen[2]]
    assert draft == result.text and result.flags == []


def test_sentence_check_keeps_lowest_score_when_all_rejected(engine):
    scores = iter([5, 1, 4, 3, 2])

    def always_reject(sentence):
        return {"score": next(scores)}

    seen = []

    def recording(sentence):
        seen.append(sentence)
        return always_reject(sentence)

    draft, result = consume(Passage(engine, STORY, Settings(sentences=1, seed=4, temperature=1.0),
                                          check=recording))
    assert len(seen) == 5
    assert result.sentences == [seen[1]]
    assert result.flags and result.flags[0]["score"] == 1 and result.flags[0]["attempts"] == 5
    assert draft == result.text


@pytest.mark.parametrize("field,value,allowed", [
    ("sentences", 0, "from 1 to 5"), ("sentences", 6, "from 1 to 5"), ("sentences", 2.5, "1 to 5"),
    ("temperature", -0.1, "from 0.0 to 2.0"), ("temperature", 2.5, "from 0.0 to 2.0"),
    ("temperature", "hot", "0.0 to 2.0"),
    ("top_p", 0.0, "from 0.01 to 1.0"), ("top_p", 1.5, "from 0.01 to 1.0"),
    ("top_k", -1, "from 0 to 1000"), ("top_k", 1001, "from 0 to 1000"),
    ("repetition_penalty", 0.9, "from 1.0 to 2.0"), ("repetition_penalty", 3.0, "from 1.0 to 2.0"),
    ("seed", -1, "from 0 to 4294967295"), ("seed", 2**32, "from 0 to 4294967295"), ("seed", True, "0 to"),
    ("max_context", 10, "from 64 to 8192"), ("max_context", 10**6, "from 64 to 8192"),
    ("max_new_tokens", 4, "from 8 to 1024"), ("max_new_tokens", 600, "at most half of max_context"),
])
def test_bad_settings_are_rejected_with_their_range(field, value, allowed):
    with pytest.raises(SettingsError) as info:
        replace(Settings(), **{field: value}).validate()
    assert info.value.field == field
    assert field in str(info.value) and allowed in str(info.value)


def test_engine_validates_settings_before_generating(tiny_engine):
    with pytest.raises(SettingsError):
        passagelib.run(tiny_engine, STORY, Settings(sentences=9))


def test_settings_from_dict_rejects_unknown_keys():
    with pytest.raises(SettingsError) as info:
        Settings.from_dict({"sentences": 2, "temprature": 1.0})
    assert "temprature" in str(info.value) and "temperature" in str(info.value)
    assert Settings.from_dict({"sentences": 3}).sentences == 3


def test_streaming_never_splits_utf8(tiny_engine):
    # Byte-level BPE can emit half a character; pieces must still be whole strings
    # that re-encode cleanly.
    for seed in range(3):
        for piece in Passage(tiny_engine, "Ça va. Élan arrive — “Zut!”",
                                        Settings(seed=seed, temperature=1.5, sentences=1, max_new_tokens=40)):
            if isinstance(piece, str):
                assert "\ufffd" not in piece
                piece.encode("utf-8")


def test_prefix_cache_gives_the_same_text_as_a_cold_start(tiny_engine):
    """Reusing the cached prefix of an earlier prompt must not change the output."""
    from batplots.model.engine.transformers_engine import TransformersEngine
    from tests import tiny

    settings = Settings(sentences=2, seed=9)
    passagelib.run(tiny_engine, STORY + " The Joker laughs at the museum.", settings)  # leaves a longer cache behind
    warm = passagelib.run(tiny_engine, STORY, settings)
    cold = passagelib.run(TransformersEngine(tiny.trained_llama(), tiny.tokenizer()), STORY, settings)
    assert warm.text == cold.text
    assert tiny_engine._cache_ids[: tiny_engine.count_tokens(STORY)] == tiny_engine.encode(STORY)


def test_a_step_bias_is_asked_with_the_text_so_far_and_steers_until_done(engine):
    """Guidance.step_bias (batplots.story.steer's hook) on the transformers backends; the llama
    engine has the same test in test_writer."""
    from batplots.model.engine.base import Guidance

    target = engine.encode(" Robin")[0]
    asked: list[str] = []

    def until_robin(text: str) -> dict[int, float]:
        asked.append(text)
        return {} if "Robin" in text else {target: 100.0}

    settings = Settings(temperature=0, max_new_tokens=5)
    g = Guidance(logprobs=[], step_bias=until_robin)
    steered = "".join(engine.pieces("Batman", settings, 1, None, g))
    always = "".join(engine.pieces("Batman", settings, 1, None, Guidance(bias={target: 100.0})))
    assert steered.startswith(" Robin") and steered != always
    assert asked[:2] == ["", " Robin"] and len(asked) == 5
    assert g.logprobs[0] < -0.5  # the model's own log-probability, not the pushed one (~0)
