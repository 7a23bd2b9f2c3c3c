"""The copy guard: a scripted generator proposes copies, the guard makes it resample."""

import json
import re

import pytest
from click.testing import CliRunner

from batplots.corpus import guard as guardlib
from batplots.cli.main import main
from batplots.model.engine import EngineSpec, Rewind, Settings, SettingsError
from batplots.model.engine.base import Engine
from batplots.story.passage import MAX_SENTENCE_RETRIES, consume
from batplots.story.writer import Writer
from batplots.corpus.index import load_index
from batplots.text import split_sentences
from tests import tiny
from tests.webserver import make_server, new_story  # noqa: F401  (make_server: a real uvicorn server)

EPISODES = [
    {"title": "Hi Diddle Riddle", "url": "https://batman.fandom.com/wiki/Hi_Diddle_Riddle",
     "plot": "The Riddler hides a riddle inside the Moldavian friendship cake at the World's Fair. "
             "Batman and Robin follow the clue to an art gallery downtown."},
    {"title": "The Joker Is Wild", "url": "https://batman.fandom.com/wiki/The_Joker_Is_Wild",
     "plot": "The Joker escapes from the state prison during the annual baseball game. "
             "He plans to steal the jewels from the Comedians Hall of Fame."},
]
# Copies 12 consecutive words of the Joker episode (a whole sentence).
COPIED = "The Joker escapes from the state prison during the annual baseball game."
COPIED_8 = "At dawn the Joker escapes from the state prison during a picnic."  # 8 copied words
ORIGINAL = "Alfred polishes the Batmobile while humming a tune about penguins."
STORY = "Gotham City sleeps."


class ScriptedEngine(Engine):
    """An engine whose every generation attempt writes the next sentence of a script."""

    name = "scripted"

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.calls = 0

    def count_tokens(self, text):
        return len(text.split())

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        sentence = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        words = sentence.split(" ") + ["Then"] * settings.max_new_tokens  # a model runs on past the stop
        for word in words[:settings.max_new_tokens]:
            yield " " + word


@pytest.fixture
def corpus_path(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EPISODES), encoding="utf-8")
    return path


@pytest.fixture
def guard(corpus_path):
    return guardlib.guard_for_corpus(corpus_path)


class Scripted:
    """A scripted engine behind a one-take Writer that holds the guard, as every face
    (generate, write, the web app) uses it."""

    def __init__(self, script, guard, copy_check=None):
        self.engine = ScriptedEngine(script)
        self.writer = Writer(self.engine, guard=guard, takes=1, copy_check=copy_check)

    @property
    def calls(self) -> int:
        return self.engine.calls

    def run(self, story, settings):
        return self.writer.run(story, settings)

    def stream(self, story, settings):
        return self.writer.stream(story, settings)


def scripted(script, guard, copy_check=None):
    return Scripted(script, guard, copy_check)


def test_a_copied_sentence_is_taken_back_and_resampled(guard):
    engine = scripted([COPIED, ORIGINAL], guard)
    events = list(engine.stream(STORY, Settings(sentences=1, seed=1)))
    assert any(isinstance(e, Rewind) for e in events)  # the copy was streamed, then taken back
    engine = scripted([COPIED, ORIGINAL], guard)
    draft, result = consume(engine.stream(STORY, Settings(sentences=1, seed=1)))
    assert engine.calls == 2
    assert result.sentences == [ORIGINAL] and draft == result.text == " " + ORIGINAL
    assert result.flags == []
    [prov] = result.provenance
    assert prov["sentence"] == 0 and not prov["flagged"] and prov["words"] < 8


def test_guard_applies_per_sentence_and_keeps_order(guard):
    engine = scripted([ORIGINAL, COPIED, "Robin sighs."], guard)
    result = engine.run(STORY, Settings(sentences=2, seed=2))
    assert result.sentences == [ORIGINAL, "Robin sighs."] and result.flags == []


def test_when_every_try_copies_the_least_copying_is_kept_and_flagged(guard):
    script = [COPIED] * 3 + [COPIED_8] + [COPIED] * 10
    engine = scripted(script, guard)
    draft, result = consume(engine.stream(STORY, Settings(sentences=1, seed=3)))
    assert engine.calls == MAX_SENTENCE_RETRIES + 1
    assert result.sentences == [COPIED_8] and draft == result.text
    [flag] = result.flags
    assert flag["score"] == 8 and flag["attempts"] == MAX_SENTENCE_RETRIES + 1
    assert flag["span"] == "the Joker escapes from the state prison during"
    assert flag["episode"] == "The Joker Is Wild" and flag["url"].endswith("The_Joker_Is_Wild")
    [prov] = result.provenance
    assert prov["flagged"] and prov["words"] == 8 and prov["episode"] == "The Joker Is Wild"


def test_the_limit_is_the_first_copying_length(guard):
    seven = "Yesterday the Joker escapes from the state prison quietly."  # 7 corpus words
    assert guard.sentence_check(8)(seven) is None
    assert guard.sentence_check(7)(seven)["score"] == 7
    assert guard.sentence_check(8)(COPIED_8)["score"] == 8
    assert guard.sentence_check(0) is None


def test_a_new_sentence_that_could_not_start_one_is_cleaned(guard):
    """A model that opens its second sentence with a markdown mark or in lower case
    still gives N sentences that split as N when joined (the eval checks this)."""
    engine = scripted([ORIGINAL, "*Robin sighs.", "and Batman nods."], guard)
    result = engine.run(STORY, Settings(sentences=3, seed=8))
    assert result.sentences == [ORIGINAL, "Robin sighs.", "And Batman nods."]
    assert split_sentences(result.text) == result.sentences


def test_copy_limit_zero_lets_copies_through_but_still_gives_provenance(guard):
    engine = scripted([COPIED, ORIGINAL], guard)
    result = engine.run(STORY, Settings(sentences=1, seed=4, copy_limit=0))
    assert result.sentences == [COPIED] and engine.calls == 1 and result.flags == []
    [prov] = result.provenance
    assert prov["words"] == 12 and prov["episode"] == "The Joker Is Wild" and not prov["flagged"]
    assert prov["passage"].startswith("The Joker escapes")


def test_an_explicit_sentence_check_replaces_the_guard(guard):
    engine = scripted([COPIED, ORIGINAL], guard, copy_check=lambda s: None)
    result = engine.run(STORY, Settings(sentences=1, seed=5))
    assert result.sentences == [COPIED]


def test_no_guard_no_provenance():
    result = Writer(ScriptedEngine([COPIED]), takes=1).run(STORY, Settings(sentences=1, seed=6))
    assert result.sentences == [COPIED] and result.provenance == [] and result.flags == []


def test_provenance_names_the_right_episode_for_each_sentence(corpus_path):
    index = load_index(corpus_path)
    sentences = ["Batgirl and Alfred follow the clue to an art gallery downtown.", COPIED, "Nothing matches here, chum."]
    prov = guardlib.provenance(index, sentences, [{"sentence": 1, "score": 12}])
    assert [p["episode"] for p in prov] == ["Hi Diddle Riddle", "The Joker Is Wild", None]
    assert prov[0]["url"] == "https://batman.fandom.com/wiki/Hi_Diddle_Riddle"
    assert prov[0]["span"] == "follow the clue to an art gallery downtown" and prov[0]["words"] == 8
    assert [p["flagged"] for p in prov] == [False, True, False]
    assert [p["text"] for p in prov] == sentences
    assert prov[2]["words"] == 0 and prov[2]["passage"] is None


def test_copy_limit_setting_is_validated():
    assert Settings(copy_limit=0).validate().copy_limit == 0
    assert Settings().copy_limit == 8
    for bad in (3, 65, -1, True, 8.0):
        with pytest.raises(SettingsError, match="copy_limit must be 0 \\(guard off\\) or a whole number from 4 to 64"):
            Settings(copy_limit=bad).validate()
    with pytest.raises(SettingsError) as err:
        Settings.from_dict({"copy_limit": 2})
    assert err.value.field == "copy_limit"


# ------------------------------------------------------------ finding the corpus

def write_training(adapter, **info):
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "training.json").write_text(json.dumps(info))
    return adapter


def test_guard_for_adapter_finds_the_corpus_training_json_names(tmp_path, corpus_path):
    from batplots.corpus.episodes import corpus_sha256

    sha = corpus_sha256(corpus_path)
    g = guardlib.guard_for_adapter(write_training(tmp_path / "a1", corpus={"path": str(corpus_path), "sha256": sha}))
    assert g.active and g.note is None and g.index.sha256 == sha
    assert g.describe()["episodes"] == 2
    # A relative path is tried beside the adapter too; the flat form is read as well.
    (tmp_path / "a2").mkdir()
    (tmp_path / "a2" / "c.jsonl").write_bytes(corpus_path.read_bytes())
    g = guardlib.guard_for_adapter(write_training(tmp_path / "a2", corpus="c.jsonl", corpus_sha256=sha))
    assert g.active and g.corpus == str(tmp_path / "a2" / "c.jsonl")


def test_guard_is_off_with_a_clear_note_when_the_corpus_is_unknown_or_gone(tmp_path, corpus_path):
    g = guardlib.guard_for_adapter(write_training(tmp_path / "a", corpus=str(tmp_path / "gone.txt")))
    assert not g.active and "gone.txt is not on this machine" in g.note and "copy guard off" in g.note
    (tmp_path / "b").mkdir()
    g = guardlib.guard_for_adapter(tmp_path / "b")
    assert not g.active and "training.json is missing" in g.note
    g = guardlib.guard_for_adapter(write_training(tmp_path / "c", epochs=3))
    assert not g.active and "names no corpus" in g.note
    g = guardlib.guard_for_adapter(None)
    assert not g.active and "bare base model" in g.note
    assert g.sentence_check(8) is None and g.provenance(["A."]) == []
    # Off, the engine writes as before.
    engine = scripted([COPIED], g)
    assert engine.run(STORY, Settings(sentences=1, seed=1)).sentences == [COPIED]


def test_batplots_corpus_points_the_guard_at_a_corpus_elsewhere(tmp_path, corpus_path, monkeypatch):
    from batplots.corpus.episodes import corpus_sha256

    sha = corpus_sha256(corpus_path)
    moved = tmp_path / "elsewhere" / "plots.jsonl"
    moved.parent.mkdir()
    moved.write_bytes(corpus_path.read_bytes())
    adapter = write_training(tmp_path / "a", corpus="gone/plots.jsonl", corpus_sha256=sha)
    assert not guardlib.guard_for_adapter(adapter).active
    assert "set $BATPLOTS_CORPUS to the file" in guardlib.guard_for_adapter(adapter).note
    monkeypatch.setenv("BATPLOTS_CORPUS", str(moved))
    g = guardlib.guard_for_adapter(adapter)
    assert g.active and g.corpus == str(moved) and g.note is None and g.index.sha256 == sha
    # It wins over the path training.json records, with a warning when it is another text.
    other = tmp_path / "other.txt"
    other.write_text("Batman and Robin race to the Batmobile. The Joker laughs at the museum.")
    monkeypatch.setenv("BATPLOTS_CORPUS", str(other))
    g = guardlib.guard_for_adapter(write_training(tmp_path / "b", corpus=str(corpus_path), corpus_sha256=sha))
    assert g.active and g.corpus == str(other) and "differs from the one the adapter was trained on" in g.note
    # A name that is not a file turns the guard off and says so; it does not fall back.
    monkeypatch.setenv("BATPLOTS_CORPUS", str(tmp_path / "nope.txt"))
    g = guardlib.guard_for_adapter(write_training(tmp_path / "c", corpus=str(corpus_path), corpus_sha256=sha))
    assert not g.active and "$BATPLOTS_CORPUS names" in g.note and "nope.txt, which is not a file" in g.note


def test_a_changed_corpus_is_used_with_a_warning(tmp_path, corpus_path):
    g = guardlib.guard_for_adapter(write_training(tmp_path / "a", corpus=str(corpus_path), corpus_sha256="0" * 64))
    assert g.active and "differs from the one the adapter was trained on" in g.note


# ------------------------------------------------------------ wired into load_engine and the CLI

@pytest.fixture
def tiny_model_dirs(tmp_path, corpus_path):
    """A tiny base model directory and a real PEFT adapter whose training.json names the corpus."""
    from peft import LoraConfig, get_peft_model

    base = tmp_path / "tiny-base"
    tiny.trained_llama().save_pretrained(base)  # writes sentences, so runs end quickly
    tiny.tokenizer().save_pretrained(base)
    adapter = tmp_path / "tiny-adapter"
    peft_model = get_peft_model(tiny.llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(adapter)
    write_training(adapter, corpus={"path": str(corpus_path), "sha256": load_index(corpus_path).sha256})
    return base, adapter


def test_the_writer_for_an_adapter_holds_its_guard(tiny_model_dirs):
    from batplots.story.writer import open_writer

    base, adapter = tiny_model_dirs
    writer = open_writer(EngineSpec(base=str(base), adapter=str(adapter)), takes=1)
    assert not hasattr(writer.engine, "copy_guard")  # the backend is bare: the Writer holds the guard
    assert writer.engine.describe()["adapter"] == adapter.name and writer.takes == 1
    assert writer.guard.active and writer.guard.index.titles[1] == "The Joker Is Wild"
    result = writer.run(STORY, Settings(sentences=1, seed=1, max_new_tokens=40, max_context=128))
    assert len(result.provenance) == len(result.sentences)
    assert not open_writer(EngineSpec(base=str(base), adapter="none")).guard.active


def test_cli_copy_guard_options(tiny_model_dirs):
    base, adapter = tiny_model_dirs
    runner = CliRunner()
    args = ["generate", STORY, "--base", str(base), "--adapter", str(adapter), "--seed", "1", "-n", "1", "--json"]
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["settings"]["copy_limit"] == 8 and data["copy_guard"]["active"]
    assert len(data["provenance"]) == len(data["sentences"])
    off = json.loads(runner.invoke(main, args + ["--no-copy-guard"]).stdout)
    assert off["settings"]["copy_limit"] == 0
    bad = runner.invoke(main, args + ["--copy-limit", "2"])
    assert bad.exit_code == 2 and "copy_limit must be 0 (guard off) or a whole number from 4 to 64" in bad.output
    bare = runner.invoke(main, args[:4] + ["--adapter", "none"] + args[6:])
    assert bare.exit_code == 0 and "copy guard off: the bare base model" in bare.stderr


# ------------------------------------------------------------ the web API (real uvicorn on 127.0.0.1)

def test_web_turns_carry_provenance_and_the_copy_limit_is_a_story_setting(make_server, guard):
    engine = ScriptedEngine([COPIED, ORIGINAL])
    srv = make_server(engine=engine, guard=guard)
    c = srv.client
    health = c.get("/healthz").json()
    assert health["copy_guard"]["active"] and health["copy_guard"]["episodes"] == 2
    story = new_story(c)
    assert story["settings"]["copy_limit"] == 8
    story = c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"], "sentences": 1}).json()
    model = story["turns"][-1]
    assert model["text"] == ORIGINAL and engine.calls == 2  # the copy was resampled
    [prov] = model["meta"]["provenance"]
    assert prov["text"] == ORIGINAL and not prov["flagged"] and model["meta"]["flags"] == []
    # With the guard off for this story, the copy goes through; provenance names its episode.
    story = c.patch(f"/api/stories/{story['id']}", json={"version": story["version"],
                                                          "settings": {"copy_limit": 0}}).json()
    assert story["settings"]["copy_limit"] == 0
    engine.script, engine.calls = [COPIED], 0
    story = c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"], "sentences": 1}).json()
    [prov] = story["turns"][-1]["meta"]["provenance"]
    assert prov["episode"] == "The Joker Is Wild" and prov["words"] == 12 and prov["url"].endswith("Joker_Is_Wild")
    # A picked alternative's provenance is computed from its text; a copy is marked.
    picked = c.post(f"/api/stories/{story['id']}/turns", json={"text": f"{ORIGINAL} {COPIED}", "author": "model",
                                                              "version": story["version"]}).json()
    prov = picked["turns"][-1]["meta"]["provenance"]
    assert [p["flagged"] for p in prov] == [False, False]  # this story's copy_limit is 0: nothing to mark
    story = c.patch(f"/api/stories/{story['id']}", json={"version": picked["version"],
                                                          "settings": {"copy_limit": 8}}).json()
    picked = c.post(f"/api/stories/{story['id']}/turns", json={"text": COPIED, "author": "model",
                                                              "version": story["version"]}).json()
    [prov] = picked["turns"][-1]["meta"]["provenance"]
    assert prov["flagged"] and prov["episode"] == "The Joker Is Wild"


def test_page_shows_provenance_on_hover_and_tap_and_marks_copies(guard, tmp_path):
    """Headless Chromium: sentence titles name the episode, a copy the guard let through
    is marked, the button shows it all in the status line, and copy_limit is a setting."""
    import httpx

    from batplots.web import WebConfig, create_app
    from tests.test_web_e2e import CHROMIUM, CHROMIUM_ARGS, DESKTOP, STEP_MS, PageWatch, expect, sync_api
    from tests.fakegen import fake_writer
    from tests.webserver import LiveServer

    # Every try copies: the guard keeps the least-copying one and flags it.
    engine = ScriptedEngine([COPIED_8])
    app = create_app(WebConfig(db_path=tmp_path / "prov.sqlite3", writer=fake_writer(engine, guard=guard),
                               settings=Settings(sentences=1)))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as client, sync_api.sync_playwright() as p:
        story = new_story(client, text=ORIGINAL)
        client.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]})
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#model-status")).to_contain_text("repeat the training episodes are rewritten")
        page.click("#model-details summary")  # the technical detail is a click away
        expect(page.locator("#model-detail")).to_contain_text("copy guard on (2 episodes indexed)")
        page.locator("#story-list button").first.click()
        sentence = page.locator("#story .passage.model .sentence")
        expect(sentence).to_have_text(COPIED_8)
        expect(sentence).to_have_class(re.compile(r"\bcopied\b"))
        title = sentence.get_attribute("title")
        assert "copy guard let this through: 8 words" in title and "Closest episode: The Joker Is Wild" in title
        page.locator("#story .prov-btn").click()  # a popover beside the passage, not the status line
        expect(page.locator("#story .prov-pop li")).to_have_text([re.compile("^The copy guard let this through")])
        expect(page.locator(".passage-editor")).to_have_count(0)  # the button does not open the editor
        page.click(".settings summary")
        expect(page.locator("#set-copy-limit")).to_have_value("8")
        page.fill("#set-copy-limit", "12")
        page.keyboard.press("Tab")  # a change takes effect at once
        expect(page.locator("#settings-state")).to_contain_text("Saved")
        assert client.get(f"/api/stories/{story['id']}").json()["settings"]["copy_limit"] == 12
        watch.check()
        browser.close()


def test_write_names_flagged_sentences_and_shows_sources(guard):
    import io

    from batplots.cli.write import WriteSession

    out, err = io.StringIO(), io.StringIO()
    session = WriteSession(scripted([COPIED] * (MAX_SENTENCE_RETRIES + 1), guard).writer,
                           Settings(sentences=1, seed=3), out=out, err=err)
    session.handle("/sources")
    assert "No model passage yet." in err.getvalue()
    session.handle("Gotham City sleeps.")
    assert f"model> {COPIED}" in out.getvalue()
    assert "(copy guard: sentence 1 still shares 12 words with 'The Joker Is Wild'" in err.getvalue()
    session.handle("/sources")
    assert (f"1. {COPIED}\n   closest in the corpus: shares 12 words with 'The Joker Is Wild': "
            f"{COPIED[:-1]!r} [let through by the guard]") in err.getvalue()

    plain = WriteSession(scripted([ORIGINAL], guardlib.CopyGuard(None, None, "copy guard off")).writer,
                         Settings(sentences=1, seed=3), out=io.StringIO(), err=io.StringIO())
    plain.handle("Gotham City sleeps.")
    plain.handle("/sources")
    assert "the copy guard is off" in plain.err.getvalue()
