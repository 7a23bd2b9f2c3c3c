"""Issue 26, the web part: a story picks the fast or the best base when the server offers
both. The real app on 127.0.0.1 with fake Writers for both sides (the real 1.5B is far
too slow for web tests), the second one loaded by the app itself, lazily, as serve's is."""

import threading

import httpx
import pytest
from click.testing import CliRunner

from batplots.model import bases
from batplots.story.lore import Lore
from batplots.story.writer import Writer
from batplots.web import WebConfig, create_app
from batplots.web import app as webapp
from batplots.web import bases as webbases
from tests.fakegen import FakeEngine, HeldEngine, fake_sentences, fake_writer
from tests.test_web_e2e import DESKTOP, STEP_MS, PageWatch, browser, expect  # noqa: F401
from tests.webserver import WAIT_S, LiveServer, assert_error, make_server, new_story, wait_until  # noqa: F401

OWN_LORE = Lore(counts={"Batman": 40})
BEST_LORE = Lore(counts={"Batman": 40, "Egghead": 12})


class TwoBases:
    """A live app whose own base is fast (a FakeEngine) and that offers best, loaded by
    the app on first use: the load waits for `release` (set at once unless held) and is counted."""

    def __init__(self, tmp_path, hold=False, fast_engine=None):
        self.fast = fast_engine or FakeEngine(label="fast-fake")
        self.best = FakeEngine(label="best-fake")
        self.loads = 0
        self.release = threading.Event()
        if not hold:
            self.release.set()
        config = WebConfig(db_path=tmp_path / "bases.sqlite3",
                           writer=Writer(self.fast, takes=1, lore=OWN_LORE), base=bases.SMOLLM2,
                           other_base=bases.QWEN15, load_other=self._load_best)
        self.app = create_app(config)
        self.srv = LiveServer(self.app).__enter__()
        self.client = httpx.Client(base_url=self.srv.url, timeout=WAIT_S)

    def _load_best(self):
        self.loads += 1
        if not self.release.wait(WAIT_S):
            raise RuntimeError("the test never released the load")
        return Writer(self.best, takes=1, lore=BEST_LORE)

    def model(self, role):
        return next(m for m in self.client.get("/healthz").json()["models"] if m["role"] == role)

    def close(self):
        self.client.close()
        self.srv.__exit__(None, None, None)


@pytest.fixture
def two_bases(tmp_path):
    made = []

    def make(**kwargs):
        made.append(TwoBases(tmp_path, **kwargs))
        return made[-1]
    yield make
    for server in made:
        server.close()


def one_base_app(tmp_path, base=bases.SMOLLM2):
    """A live app offering only its own base (serve --one-base, or the other not installed)."""
    app = create_app(WebConfig(db_path=tmp_path / "one.sqlite3", writer=fake_writer(), base=base))
    return LiveServer(app).__enter__()


# --- the API ------------------------------------------------------------------------------
def test_healthz_lists_both_bases_and_the_second_is_not_loaded_until_a_story_asks(two_bases):
    s = two_bases()
    health = s.client.get("/healthz").json()
    assert health["status"] == "ready" and health["model"] == {"engine": "fake", "model": "fast-fake"}  # as before
    fast, best = health["models"]
    assert {k: fast[k] for k in ("role", "name", "label", "status", "default")} == {
        "role": "fast", "name": "smollm2-135m-instruct", "label": "SmolLM2-135M", "status": "ready", "default": True}
    assert best == {"role": "best", "name": "qwen2.5-coder-1.5b-instruct", "label": "Qwen2.5-Coder-1.5B",
                    "status": "not loaded", "default": False}
    # Stories that keep to the server's own base never load the other.
    story = new_story(s.client)
    assert s.client.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}).status_code == 200
    assert s.loads == 0 and s.model("best")["status"] == "not loaded" and s.best.started == 0


def test_a_story_chooses_a_base_strictly(two_bases):
    s = two_bases()
    c = s.client
    defaults = {"sentences": 2, "temperature": 0.8, "top_p": 0.95, "copy_limit": 8}
    plain = c.post("/api/stories").json()
    assert plain["settings"] == defaults  # no choice: the server's own base, nothing stored
    fast = c.post("/api/stories", json={"settings": {"model": "fast"}}).json()
    assert fast["settings"] == {**defaults, "model": "fast"} and s.loads == 0
    for bad in ("medium", "Best", "", 1):
        body = assert_error(c.post("/api/stories", json={"settings": {"model": bad}}), 422, "settings.model")
        assert "'fast' or 'best'" in body["detail"], body
    assert_error(c.post("/api/stories", json={"settings": {"modle": "best"}}), 422, "unknown field 'settings.modle'")
    patched = c.patch(f"/api/stories/{plain['id']}", json={"version": plain["version"], "settings": {"model": "best"}})
    assert patched.status_code == 200 and patched.json()["settings"] == {**defaults, "model": "best"}
    wait_until(lambda: s.model("best")["status"] == "ready", "the best base to load")  # choosing it starts the load
    assert s.loads == 1
    # Other settings change without touching the choice; the choice changes back.
    again = c.patch(f"/api/stories/{plain['id']}", json={"version": patched.json()["version"],
                                                          "settings": {"sentences": 3}}).json()
    assert again["settings"]["model"] == "best" and again["settings"]["sentences"] == 3
    back = c.patch(f"/api/stories/{plain['id']}", json={"version": again["version"], "settings": {"model": "fast"}})
    assert back.json()["settings"]["model"] == "fast"


def test_the_second_base_loads_on_first_use_then_writes_the_stories_that_chose_it(two_bases):
    s = two_bases(hold=True)
    c = s.client
    # A story saved with "best" before this server started (nothing has asked for it since).
    story = s.app.state.store.create("Egghead's Omelette", {"sentences": 2, "model": "best"})
    story = c.post(f"/api/stories/{story['id']}/turns",
                   json={"text": "Egghead cracks a safe.", "version": story["version"]}).json()
    story = c.post(f"/api/stories/{story['id']}/turns",  # a picked take, so that Retry has one to replace
                   json={"text": "Robin gasps.", "author": "model", "version": story["version"]}).json()
    sid, version = story["id"], story["version"]
    assert s.loads == 0
    # Its first generation starts the load and says the chosen base is loading (not "the model").
    assert_error(c.post(f"/api/stories/{sid}/continue", json={"version": version}), 503,
                 "the best model (Qwen2.5-Coder-1.5B) is loading now", "GET /healthz")
    assert s.model("best")["status"] == "loading" and s.client.get("/healthz").json()["status"] == "ready"
    for action in ("continue", "retry", "alternatives"):
        assert_error(c.post(f"/api/stories/{sid}/{action}", json={"version": version}), 503,
                     "the best model (Qwen2.5-Coder-1.5B) is still loading")
    assert s.loads == 1  # one load however many ask
    # The server's own base still writes for everyone else meanwhile.
    other = new_story(c)
    assert c.post(f"/api/stories/{other['id']}/continue", json={"version": other["version"]}).status_code == 200
    s.release.set()
    wait_until(lambda: s.model("best")["status"] == "ready", "the best base to load")
    before = s.fast.started
    written = c.post(f"/api/stories/{sid}/continue", json={"version": version})
    assert written.status_code == 200, written.text
    assert s.best.started >= 1 and s.fast.started == before  # the chosen base wrote it
    assert written.json()["turns"][-1]["meta"]["engine"] == {"engine": "fake", "model": "best-fake"}
    alts = c.post(f"/api/stories/{sid}/alternatives", json={"version": written.json()["version"], "n": 2})
    assert alts.status_code == 200 and s.best.started > 1 and s.fast.started == before
    assert all(fake_sentences(take["text"]) for take in alts.json()["candidates"])
    retried = c.post(f"/api/stories/{sid}/retry", json={"version": written.json()["version"]})
    assert retried.status_code == 200 and s.fast.started == before
    health = s.client.get("/healthz").json()
    assert [m["status"] for m in health["models"]] == ["ready", "ready"]
    assert health["models"][1]["model"] == {"engine": "fake", "model": "best-fake"}
    assert isinstance(health["models"][1]["load_seconds"], float)


def test_a_base_that_fails_to_load_says_which(tmp_path):
    def broken():
        raise RuntimeError("no such adapter: batman66-qwen1.5b")

    app = create_app(WebConfig(db_path=tmp_path / "s.sqlite3", writer=fake_writer(), base=bases.SMOLLM2,
                               other_base=bases.QWEN15, load_other=broken))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=WAIT_S) as c:
        story = c.post("/api/stories", json={"settings": {"model": "best"}}).json()
        wait_until(lambda: c.get("/healthz").json()["models"][1]["status"] == "error", "the load to fail")
        story = c.post(f"/api/stories/{story['id']}/turns", json={"text": "Pow!", "version": story["version"]}).json()
        assert_error(c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}), 503,
                     "the best model (Qwen2.5-Coder-1.5B) failed to load: no such adapter")
        assert c.get("/healthz").json()["status"] == "ready"  # the server's own base is fine


def test_both_bases_wait_in_the_one_bridge(two_bases):
    s = two_bases(fast_engine=HeldEngine(after=1, label="fast-fake"))
    main, other = s.app.state.model, s.app.state.models.other
    assert other.bridge is main.bridge  # one limit of waiting generations, not one per base
    main.bridge.limit = 1  # so that one generation fills it
    best_story = s.client.post("/api/stories", json={"settings": {"model": "best"}}).json()
    best_story = s.client.post(f"/api/stories/{best_story['id']}/turns",
                               json={"text": "Pow!", "version": best_story["version"]}).json()
    wait_until(lambda: s.model("best")["status"] == "ready", "the best base to load")
    fast_story = new_story(s.client)
    result = {}
    held = threading.Thread(target=lambda: result.update(r=s.client.post(
        f"/api/stories/{fast_story['id']}/continue", json={"version": fast_story["version"]})))
    held.start()
    try:
        wait_until(lambda: s.fast.holding == 1, "the fast base to hold its generation")
        assert main.bridge.pending() == 1
        assert_error(s.client.post(f"/api/stories/{best_story['id']}/continue",
                                   json={"version": best_story["version"]}), 503, "busy", "at most 1 wait")
    finally:
        s.fast.release.set()
        held.join(WAIT_S)
    assert result["r"].status_code == 200
    assert s.client.post(f"/api/stories/{best_story['id']}/continue",
                         json={"version": best_story["version"]}).status_code == 200


def test_a_base_not_offered_is_refused_saying_why(tmp_path, monkeypatch):
    srv = one_base_app(tmp_path)
    c = httpx.Client(base_url=srv.url, timeout=WAIT_S)
    try:
        assert [m["role"] for m in c.get("/healthz").json()["models"]] == ["fast"]
        assert c.post("/api/stories", json={"settings": {"model": "fast"}}).status_code == 201
        monkeypatch.setattr(bases, "installed", lambda base: False)
        body = assert_error(c.post("/api/stories", json={"settings": {"model": "best"}}), 422,
                            "'best' (qwen2.5-coder-1.5b-instruct) is not installed on this server", "make install-qwen")
        assert body["field"] == "model"
        monkeypatch.setattr(bases, "installed", lambda base: True)
        assert_error(c.post("/api/stories", json={"settings": {"model": "best"}}), 422,
                     "turned off on this server (batplots serve --one-base)")
        # A story that chose best on another server: its generation says so; nothing is written.
        story = srv.app.state.store.create(None, {"model": "best"})
        story = c.post(f"/api/stories/{story['id']}/turns", json={"text": "Pow!", "version": story["version"]}).json()
        assert_error(c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}), 422,
                     "'best'", "turned off")
        assert c.patch(f"/api/stories/{story['id']}", json={"version": story["version"], "settings": {"sentences": 1}},
                       ).status_code == 200  # its other settings still change
    finally:
        c.close()
        srv.__exit__(None, None, None)


def test_a_server_whose_model_is_no_named_base_offers_no_choice(make_server):  # noqa: F811
    srv = make_server()
    assert_error(srv.client.post("/api/stories", json={"settings": {"model": "fast"}}), 422,
                 "there is no choice of model")


def test_case_files_use_the_lore_of_the_base_a_story_uses(two_bases):
    s = two_bases(hold=True)
    models, store = s.app.state.models, s.app.state.store
    fast_story = new_story(s.client)
    best_story = s.client.post("/api/stories", json={"settings": {"model": "best"}}).json()
    assert not models.lores_differ()  # best not loaded yet: no story need be read for its lore
    assert models.story_lore(store, best_story["id"]) is OWN_LORE
    s.release.set()
    wait_until(lambda: s.model("best")["status"] == "ready", "the best base to load")
    assert models.lores_differ()
    assert models.story_lore(store, best_story["id"]) is BEST_LORE
    assert models.story_lore(store, fast_story["id"]) is OWN_LORE
    assert models.story_lore(store, None) is OWN_LORE


# --- serve --------------------------------------------------------------------------------
def test_second_base_is_offered_only_beside_a_named_base_that_is_installed(monkeypatch):
    monkeypatch.setattr(bases, "installed", lambda base: True)
    assert webbases.second_base("auto", None, one_base=False) is bases.SMOLLM2  # serve's own is the best one
    assert webbases.second_base("llama", "fast", one_base=False) is bases.QWEN15
    assert webbases.second_base("auto", "best", one_base=False) is bases.SMOLLM2
    assert webbases.second_base("auto", None, one_base=True) is None
    assert webbases.second_base("auto", "/models/mine.gguf", one_base=False) is None
    assert webbases.second_base("openai", None, one_base=False) is None
    monkeypatch.setattr(bases, "installed", lambda base: base is not bases.QWEN15)
    assert webbases.second_base("auto", None, one_base=False) is None


@pytest.mark.parametrize(("args", "offered"), [([], True), (["--one-base"], False)])
def test_serve_offers_the_other_base_lazily_and_one_base_turns_it_off(monkeypatch, args, offered):
    from batplots.cli.main import main

    monkeypatch.setattr(bases, "installed", lambda base: True)
    apps = []
    monkeypatch.setattr(webapp, "serve", lambda app, host, port, announce: (apps.append(app), announce("http://x/")))
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--base", "fast", *args])
    assert result.exit_code == 0, result.output
    state = apps[0].state
    assert state.model.base is bases.SMOLLM2 and not state.model.started()  # nothing loaded before the lifespan
    if offered:
        assert state.models.other.base is bases.QWEN15 and not state.models.other.started()
        assert state.models.other.bridge is state.model.bridge
        assert "best (qwen2.5-coder-1.5b-instruct) loads when a story first picks it" in result.output
    else:
        assert state.models.other is None and "loads when a story first picks it" not in result.output


# --- the page -----------------------------------------------------------------------------
def test_the_page_picks_best_and_names_the_base_in_use(browser, two_bases):  # noqa: F811
    s = two_bases()
    page = browser.new_page(viewport=DESKTOP)
    page.set_default_timeout(STEP_MS)
    watch = PageWatch(page, s.srv.url)
    page.goto(s.srv.url)
    status = page.locator("#model-status")
    expect(status).to_contain_text("Model ready: SmolLM2-135M (fast)")
    page.click(".settings summary")
    choice = page.get_by_label("Model", exact=True)
    expect(choice).to_be_visible()
    expect(choice).to_have_value("fast")
    expect(page.locator("#model-hint")).to_contain_text("more sensible passages")
    assert s.loads == 0
    choice.select_option("best")
    expect(page.locator("#settings-state")).to_contain_text("Saved")
    expect(status).to_contain_text("Model ready: Qwen2.5-Coder-1.5B (best)")
    story = s.client.get("/api/stories").json()[0]
    assert s.client.get(f"/api/stories/{story['id']}").json()["settings"]["model"] == "best"
    # Its passages are the best base's.
    page.fill("#next-text", "Egghead cracks the Gotham safe.")
    page.click("#continue-btn")
    expect(page.locator("#story .passage.model:not(.draft)")).to_have_count(1)
    assert s.best.started >= 1 and s.fast.started == 0
    # Set back to fast, the line names fast again.
    choice.select_option("fast")
    expect(status).to_contain_text("Model ready: SmolLM2-135M (fast)")
    watch.check()
    page.close()


def test_the_page_offers_no_choice_when_the_server_has_one_base(browser, tmp_path):  # noqa: F811
    srv = one_base_app(tmp_path)
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#model-status")).to_contain_text("Model ready: SmolLM2-135M (fast)")
        page.click(".settings summary")
        expect(page.locator("#set-sentences")).to_be_visible()
        expect(page.locator("#model-field")).to_be_hidden()
        watch.check()
        page.close()
    finally:
        srv.__exit__(None, None, None)
