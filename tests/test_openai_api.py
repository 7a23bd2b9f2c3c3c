"""The app's OpenAI-compatible API (/v1) driven by the official `openai` client, on a
real uvicorn server with a tiny real model; and stop_cut, the pure stop-string rule."""

from __future__ import annotations

import threading

import openai
import pytest

from batplots.model.engine.transformers_engine import TransformersEngine
from batplots.web.openai_api import model_id, stop_cut
from tests import tiny
from tests.webserver import make_server  # noqa: F401  (fixture)

PROMPT = "Batman and Robin slide down the Batpoles."


@pytest.fixture
def api(make_server):  # noqa: F811
    engine = TransformersEngine(tiny.trained_llama(), tiny.tokenizer(), label="tiny-llama")
    srv = make_server(engine=engine)
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0, timeout=30)
    client.model_name = model_id(engine)
    client.engine = engine
    return client


def test_models_lists_the_loaded_model(api):
    models = api.models.list().data
    assert [m.id for m in models] == ["tiny-llama"] and models[0].owned_by == "batplots"


def test_completion_and_its_stream_agree(api):
    done = api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=12, temperature=0, seed=1)
    choice = done.choices[0]
    assert choice.finish_reason == "length" and choice.text.strip()
    assert done.usage.completion_tokens == 12 and done.usage.prompt_tokens == api.engine.count_tokens(PROMPT)
    assert done.object == "text_completion" and done.model == "tiny-llama"
    chunks = list(api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=12, temperature=0,
                                         seed=1, stream=True))
    assert len(chunks) >= 6  # token by token, not one lump
    assert "".join(c.choices[0].text for c in chunks) == choice.text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_sampling_is_seeded(api):
    def write(seed):
        return api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=20, temperature=1.5,
                                      seed=seed, extra_body={"top_k": 0}).choices[0].text
    assert write(4) == write(4)
    assert len({write(s) for s in (1, 2, 3)}) > 1


def test_stop_strings_end_the_completion_before_them(api):
    full = api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=30, temperature=0).choices[0].text
    stop = full.split()[2]  # a word the model writes
    cut = api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=30, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == full[:full.index(stop)]
    streamed = api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=30, temperature=0,
                                      stop=stop, stream=True)
    pieces = list(streamed)
    assert "".join(c.choices[0].text for c in pieces) == cut.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "stop"


def test_bad_requests_say_what_is_allowed(api):
    with pytest.raises(openai.BadRequestError, match="temperature must be from 0.0 to 2.0"):
        api.completions.create(model=api.model_name, prompt=PROMPT, temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens must be from 1 to 1024"):
        api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=5000)
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        api.completions.create(model=api.model_name, prompt=PROMPT, n=2)
    with pytest.raises(openai.BadRequestError, match="one prompt per request"):
        api.completions.create(model=api.model_name, prompt=[PROMPT, PROMPT])
    with pytest.raises(openai.NotFoundError, match="'gpt-4' is not served here.*tiny-llama"):
        api.completions.create(model="gpt-4", prompt=PROMPT)
    with pytest.raises(openai.BadRequestError, match="exceed the context of 8192 tokens"):
        api.completions.create(model=api.model_name, prompt="Holy bat! " * 3000, max_tokens=10)
    # The server is still up and answering.
    assert api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=3).usage.completion_tokens == 3


def test_while_the_model_loads_v1_answers_503(make_server):  # noqa: F811
    release = threading.Event()

    def slow_load():
        release.wait(10)
        return TransformersEngine(tiny.trained_llama(), tiny.tokenizer(), label="tiny-llama")

    srv = make_server(load_engine=slow_load)
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0, timeout=10)
    try:
        with pytest.raises(openai.InternalServerError, match="still loading"):
            client.completions.create(model="tiny-llama", prompt=PROMPT)
    finally:
        release.set()


def test_concurrent_requests_queue_on_the_engine_and_all_answer(api):
    texts, errors = [], []

    def ask(seed):
        try:
            texts.append(api.completions.create(model=api.model_name, prompt=PROMPT, max_tokens=8, seed=seed)
                         .choices[0].text)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(texts) == 6


@pytest.mark.parametrize("text,stops,expected", [
    ("Holy smokes", [], (11, False)),
    ("Holy smokes, Bat", ["Batman"], (13, False)),  # "Bat" may grow into the stop string: held back
    ("Holy smokes, Batman!", ["Batman"], (13, True)),
    ("Robin. Batman.", ["Batman", "."], (5, True)),  # the earliest stop wins
    ("Robin", ["Batman"], (5, False)),
    ("ab", ["bc", "abc"], (0, False)),  # the longest possible start is held
])
def test_stop_cut(text, stops, expected):
    assert stop_cut(text, stops) == expected
