"""One Writer for every face: `batplots eval` measures the Writer that `serve` serves.

A tiny real model with an adapter trained "with control codes" (its training.json says
so) and the shipped lore: eval and the web app must both condition on the case file,
and send the model byte-identical prompts for the same story, case file and beat.
"""

import json
import shutil
import threading

import httpx
import pytest

from batplots.measure import evaluate
from batplots.measure import storyeval
from batplots.model.engine import EngineSpec, Settings
from batplots.model.engine.transformers_engine import TransformersEngine
from batplots.corpus.index import load_index
from batplots.model.weights import ADAPTERS_DIR
from batplots.web import WebConfig, create_app
from batplots.story.writer import open_writer
from tests import tiny
from tests.test_guard import EPISODES
from tests.webserver import LiveServer, wait_until

# The server's default settings: the eval's (batplots eval -n 2 --copy-limit 8) too.
SETTINGS = Settings(sentences=2, copy_limit=8)
TAKES = 2


@pytest.fixture
def conditioned_model(tmp_path):
    """A tiny base directory and a real PEFT adapter whose training.json names its corpus
    and says it was trained with the conditioning header; the shipped lore beside it."""
    from peft import LoraConfig, get_peft_model

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(e) + "\n" for e in EPISODES), encoding="utf-8")
    base = tmp_path / "tiny-base"
    tiny.trained_llama().save_pretrained(base)
    tiny.tokenizer().save_pretrained(base)
    adapter = tmp_path / "tiny-adapter"
    get_peft_model(tiny.llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    (adapter / "training.json").write_text(json.dumps({
        "corpus": {"path": str(corpus), "sha256": load_index(corpus).sha256},
        "conditioning": {"header_share": 0.25}}))
    shutil.copy(ADAPTERS_DIR / "batman66" / "lore.json", adapter / "lore.json")
    return EngineSpec(engine="transformers", base=str(base), adapter=str(adapter))


@pytest.fixture
def prompts_sent(monkeypatch):
    """Every prompt any TransformersEngine is asked to continue, in order, per thread."""
    sent: list[str] = []
    lock = threading.Lock()
    pieces = TransformersEngine.pieces

    def recording(self, prompt, *args, **kwargs):
        with lock:
            sent.append(prompt)
        return pieces(self, prompt, *args, **kwargs)

    monkeypatch.setattr(TransformersEngine, "pieces", recording)
    return sent


def test_eval_and_serve_send_the_same_prompts(conditioned_model, prompts_sent, tmp_path, monkeypatch):
    story = storyeval.load_stories()[0]
    opening, seed, beat = story["turns"][0], storyeval._seed(100, 0), storyeval.drawn_beat(0, 0)

    # The eval: its "+ case file + beat" run writes the first story turn with this seed and beat.
    # Only that run and one story: the others write the same passages without the case or beat.
    monkeypatch.setattr(storyeval, "RUNS", ("adapter+writer+beat",))
    monkeypatch.setattr(storyeval, "WRITER_RUNS", ("adapter+writer+beat",))
    monkeypatch.setattr(storyeval, "load_stories", lambda path=None: [{**story, "turns": [opening]}])
    marks: list[tuple[str, int]] = []
    # No openings and no plain samples: only the story run is compared.
    monkeypatch.setattr(evaluate, "load_prompts", lambda path=None: [])
    monkeypatch.setattr(evaluate, "generate_samples", lambda *args, **kwargs: {"adapter": [], "adapter+guard": []})
    monkeypatch.setattr(evaluate, "continuation_metrics", lambda *args, **kwargs: {"median_seconds": 1.0})
    report = evaluate.run_eval(evaluate.EvalOptions(engine="transformers", base=conditioned_model.base,
                                                    adapter=conditioned_model.adapter, base_samples=False,
                                                    stories=1, takes=TAKES),
                               lambda run, done, total: marks.append((run, len(prompts_sent))))
    assert report["story"]["takes"] == TAKES
    # The one-sample "adapter" run comes first (one passage), then the Writer's.
    assert [run for run, _ in marks] == ["story adapter", "story adapter+writer+beat"]
    evaluated = prompts_sent[marks[0][1]:marks[1][1]]
    prompts_sent.clear()

    # The web app, with the Writer `serve` loads: the same story, continued with the same seed and beat.
    app = create_app(WebConfig(db_path=tmp_path / "serve.sqlite3", settings=SETTINGS,
                               load_writer=lambda: open_writer(conditioned_model, TAKES)))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        wait_until(lambda: client.get("/healthz").json()["status"] == "ready", "the model to load")
        made = client.post("/api/stories", json={}).json()
        made = client.post(f"/api/stories/{made['id']}/turns", json={"text": opening, "version": made["version"]}).json()
        done = client.post(f"/api/stories/{made['id']}/continue",
                           json={"version": made["version"], "seed": seed, "beat": beat})
        assert done.status_code == 200, done.text
        served_text = done.json()["turns"][-1]["text"]
    served = list(prompts_sent)

    assert evaluated and sorted(evaluated) == sorted(served)
    # Both conditioned on the case file's villain and asked for the beat, as trained.
    assert all(p.startswith("[Villain: ") and "Pendulum" in p.split("]")[0] for p in served)
    assert any(p.rstrip().endswith(f"[Next: {beat}]") for p in served)
    passage = report["story"]["passages"]["adapter+writer+beat"][0]
    assert passage["text"] == served_text.strip()
