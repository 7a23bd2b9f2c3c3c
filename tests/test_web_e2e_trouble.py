"""The page when things go wrong, in real headless Chromium: a server that stops mid-stream
and comes back, limits that speak, messages in a fan's words, the phone's geometry."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from batplots.model.engine.base import Settings
from batplots.web import WebConfig, create_app
from tests.fakegen import FakeEngine, HeldEngine, fake_writer
from tests.test_web_e2e import DESKTOP, PHONE, STEP_MS, PageWatch, browser, expect, model_passages, ready_page  # noqa: F401
from tests.webserver import WAIT_S, LiveServer, wait_until

REPO = Path(__file__).resolve().parents[1]

# A server in its own process (so the test can kill it): HeldEngine holds every generation
# after three pieces until it is cancelled ("held"), FakeEngine writes straight on ("free").
SERVER_SCRIPT = """
import sys, uvicorn
from tests.fakegen import FakeEngine, HeldEngine, fake_writer
from batplots.web import WebConfig, create_app
engine = HeldEngine(after=3) if sys.argv[3] == "held" else FakeEngine()
app = create_app(WebConfig(db_path=sys.argv[1], writer=fake_writer(engine)))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


class HeldAfterTotal(HeldEngine):
    """Holds once `total` pieces have been written in all (the Writer may ask sentence by sentence)."""

    def __init__(self, total: int, **kwargs):
        super().__init__(after=0, **kwargs)
        self.total, self.seen = total, 0

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        for piece in FakeEngine.pieces(self, prompt, settings, seed, cancel, guidance):
            self.seen += 1
            if self.seen > self.total and not self.release.is_set():
                self._hold(cancel)
                if cancel is not None and cancel.is_set():
                    continue
            yield piece


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db, port, mode):
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(db), str(port), mode], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    deadline = time.monotonic() + 60  # a Python start with the app's imports: generous
    while not up():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    return proc


def kill(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(WAIT_S)


def test_a_server_killed_mid_stream_is_explained_and_the_page_resumes_when_it_is_back(browser, tmp_path):
    db, port = tmp_path / "crash.sqlite3", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(db, port, "held")
    try:
        page, watch = ready_page(browser, url)
        page.fill("#next-text", "Batman and Robin race to the Batmobile.")
        page.click("#continue-btn")
        draft = page.locator("#story .passage.draft")
        expect(draft).to_have_text(re.compile(r"\S+ \S+"))  # the model is under way, held by the engine

        kill(proc)  # mid-stream, no chance to say goodbye
        status = page.locator("#status")
        expect(status).to_contain_text("The server stopped answering", timeout=STEP_MS)
        expect(status).not_to_contain_text(re.compile("fetch|network error", re.I))
        expect(page.locator("#story .passage.draft")).to_have_count(0)  # the unsaved half-draft is gone
        expect(page.locator("#story .passage.user .passage-text")).to_have_text(["Batman and Robin race to the Batmobile."])
        expect(page.locator("#model-status")).to_contain_text("not answering", timeout=STEP_MS)
        expect(page.locator("#continue-btn")).to_be_disabled()
        page.fill("#next-text", "Meanwhile, the Joker laughs.")  # typed while the server is away

        proc = start_server(db, port, "free")  # same database, same address
        expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=STEP_MS)
        expect(status).to_contain_text("The server is back")
        expect(page.locator("#continue-btn")).to_be_enabled()
        expect(page.locator("#next-text")).to_have_value("Meanwhile, the Joker laughs.")  # kept
        page.click("#continue-btn")  # no reload needed
        expect(model_passages(page)).to_have_count(1)
        expect(status).to_contain_text("Your turn")
        watch.check(expected=["ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_EMPTY_RESPONSE",
                              "ERR_CONNECTION_RESET", "Failed to load resource"])
        page.close()
    finally:
        kill(proc)


def test_a_server_that_stops_while_nobody_writes_is_shown_as_unavailable(browser, tmp_path):
    db, port = tmp_path / "idle.sqlite3", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(db, port, "free")
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        page.goto(url)
        expect(page.locator("#model-status")).to_contain_text("Model ready")
        expect(page.locator("#story-title")).to_have_text("Untitled episode")
        kill(proc)
        expect(page.locator("#model-status")).to_contain_text("not answering", timeout=STEP_MS)  # the watch poll noticed
        expect(page.locator("#continue-btn")).to_be_disabled()
        proc = start_server(db, port, "free")
        expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=STEP_MS)
        expect(page.locator("#continue-btn")).to_be_enabled()
        page.close()
    finally:
        kill(proc)


def test_a_paste_over_the_passage_limit_is_said_and_nothing_is_cut(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "paste.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        page, watch = ready_page(browser, srv.url)
        sentence = "The Penguin waddles into the Gotham Museum with an umbrella full of tricks. "
        pasted = sentence * 270  # about 20,000 characters, pasted at once
        page.locator("#next-text").focus()
        page.keyboard.insert_text(pasted)  # as a paste: one input event
        status = page.locator("#status")
        expect(status).to_contain_text(f"Your text has {len(pasted)} characters; one passage holds at most 2000")
        assert page.locator("#next-text").input_value() == pasted  # nothing cut
        expect(page.locator("#char-count")).to_have_class(re.compile(r"\bover\b"))

        page.click("#continue-btn")
        expect(status).to_contain_text("Added the first")
        story = api.get("/api/stories").json()[0]
        turns = api.get(f"/api/stories/{story['id']}").json()["turns"]
        assert [t["author"] for t in turns] == ["user"]  # the model waits for the rest
        first = turns[0]["text"]
        assert len(first) <= 2000 and first.endswith("tricks.") and pasted.startswith(first)
        rest = page.locator("#next-text").input_value()
        assert first + " " + rest == pasted  # not a character lost
        expect(status).to_contain_text(f"the other {len(rest)} are still in the box")
        expect(model_passages(page)).to_have_count(0)

        # Typing again: the box's own note goes once the text fits.
        page.fill("#next-text", "Batman frowns.")
        expect(status).to_have_text("")
        page.click("#continue-btn")
        expect(model_passages(page)).to_have_count(1)
        watch.check()
        page.close()


def test_a_case_file_saved_while_the_model_writes_is_saved_when_it_finishes(browser, tmp_path):
    engine = HeldEngine(after=2)
    app = create_app(WebConfig(db_path=tmp_path / "case.sqlite3", writer=fake_writer(engine)))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        page, watch = ready_page(browser, srv.url)
        page.click("#case-edit")
        page.fill("#case-villains", "The Bookworm")
        page.fill("#next-text", "Batman and Robin reach the library.")
        page.click("#continue-btn")
        expect(page.locator("#story .passage.draft")).to_have_text(re.compile(r"\S+ \S+"))
        page.get_by_role("button", name="Save case file").click()
        expect(page.locator("#case-state")).to_contain_text("saved as soon as it finishes")
        story_id = api.get("/api/stories").json()[0]["id"]
        assert api.get(f"/api/stories/{story_id}").json()["case_file"]["edited"] == []  # not yet
        engine.release.set()
        expect(model_passages(page)).to_have_count(1)
        expect(page.locator("#case-state")).to_contain_text("Case file saved")
        expect(page.locator("#case-list dd[data-field=villains]")).to_have_text("The Bookworm")
        saved = api.get(f"/api/stories/{story_id}").json()
        assert saved["case_file"]["villains"] == ["The Bookworm"] and "villains" in saved["case_file"]["edited"]
        assert [t["author"] for t in saved["turns"]] == ["user", "model"]
        watch.check()
        page.close()


def test_messages_say_what_happened_in_plain_words_and_errors_clear_when_the_writer_acts(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "words.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv:
        context = browser.new_context(viewport=DESKTOP)
        a, b = context.new_page(), context.new_page()
        watch_a, watch_b = PageWatch(a, srv.url), PageWatch(b, srv.url)
        for page in (a, b):
            page.set_default_timeout(STEP_MS)
        a.goto(srv.url)
        expect(a.locator("#model-status")).to_contain_text("Model ready")
        b.goto(a.url)  # the same story in a second tab
        expect(b.locator("#story-title")).to_have_text("Untitled episode")

        # An empty story: Continue explains; typing clears the stale error.
        a.click("#continue-btn")
        expect(a.locator("#status")).to_contain_text("The story is empty")
        a.locator("#next-text").press_sequentially("Batman")
        expect(a.locator("#status")).to_have_text("")

        # Settings changed in two tabs: the late one is told in a fan's words, with the story's real count.
        a.click(".settings summary")
        a.select_option("#set-sentences", "1")
        expect(a.locator("#settings-state")).to_contain_text("Saved: Continue adds 1 sentence ")
        b.click(".settings summary")
        b.select_option("#set-sentences", "4")
        state = b.locator("#settings-state")
        expect(state).to_contain_text("Not saved: this story was changed in another tab or window. "
                                      "It now uses 1 sentence (")
        expect(state).not_to_contain_text(re.compile("version|stale", re.I))
        expect(b.locator("#set-sentences")).to_have_value("1")
        b.select_option("#set-sentences", "4")  # again: now it saves
        expect(state).to_contain_text("Saved: Continue adds 4 sentences")
        watch_a.check()
        watch_b.check(expected=["status of 409"])
        context.close()


def test_phone_the_line_being_written_shows_above_the_writing_bar_and_everything_is_in_reach(browser, tmp_path):
    engine = HeldAfterTotal(40)  # a draft of four sentences or so, longer than the toolbar below it
    app = create_app(WebConfig(db_path=tmp_path / "phone.sqlite3", writer=fake_writer(engine)))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        story = api.post("/api/stories", json={"title": "The Penguin's Nest", "settings": {"sentences": 5}}).json()
        for n in range(6):  # a story longer than the screen
            story = api.post(f"/api/stories/{story['id']}/turns", json={
                "text": f"Part {n}. The Penguin waddles past the Gotham Museum, umbrella high, plotting a crime "
                        "most foul while Chief O'Hara scratches his head.", "version": story["version"]}).json()
        phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        page = phone.new_page()
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(f"{srv.url}/#story={story['id']}")
        expect(page.locator("#model-status")).to_contain_text("Model ready")
        expect(page.locator("#story .passage")).to_have_count(6)

        # The case file is a tap from the top of the page.
        jump = page.locator("#jump-case")
        expect(jump).to_be_visible()
        assert jump.bounding_box()["y"] + jump.bounding_box()["height"] <= PHONE["height"]
        expect(page.locator("#case-drawer")).not_to_have_attribute("open", "")
        jump.click()
        expect(page.locator("#case-drawer")).to_have_attribute("open", "")
        expect(page.locator("#case-heading")).to_be_in_viewport()

        # Every beat button is on screen, none cut at the edge (the row wraps).
        page.locator("#next-text").scroll_into_view_if_needed()
        for beat in page.locator(".beat-btn").all():
            box = beat.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], beat.inner_text()
            assert box["height"] >= 24 and box["width"] >= 24
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        # The draft being written sits above the sticky writing bar, not under it.
        page.evaluate("window.scrollBy(0, -400)")  # reading the story: the bar stuck over its end
        page.locator(".beat-btn[data-beat=batphone]").click()
        draft = page.locator("#story .passage.draft")
        expect(draft).to_have_text(re.compile(r"(?:[^.]+\.){3}"))  # three sentences in
        wait_until(lambda: engine.holding == 1, "the draft to be held")
        # Once the page has shown what was written (however late), the draft's end sits above the bar.
        page.wait_for_function("""() => {
            const d = document.querySelector('#story .passage.draft').getBoundingClientRect();
            const bar = document.getElementById('write-form').getBoundingClientRect();
            return d.height > 150 && d.bottom <= bar.top && d.bottom > 0;
        }""", timeout=STEP_MS)
        engine.release.set()
        expect(model_passages(page)).to_have_count(1)
        watch.check()
        phone.close()


def test_the_story_list_keeps_only_stories_begun_and_a_new_story_keeps_the_last_settings(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "list.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#stories-drawer summary")).to_have_text("Your stories")  # not "Case files"
        expect(page.locator("#story-title")).to_have_text("Untitled episode")  # made for the first visit
        expect(page.locator("#story-list li")).to_have_count(1)

        # Settings saved in one story are where the next one starts.
        page.click(".settings summary")
        page.select_option("#set-sentences", "1")
        expect(page.locator("#settings-state")).to_contain_text("Saved: Continue adds 1 sentence ")
        page.fill("#set-temperature", "0.5")
        page.locator("#set-temperature").dispatch_event("change")
        expect(page.locator("#settings-state")).to_contain_text("wildness 0.5")

        # A story of one's own: the untouched first-visit story goes.
        page.fill("#new-title", "Egghead's Return")
        page.click("#new-story-form button[type=submit]")
        expect(page.locator("#story-title")).to_have_text("Egghead's Return")
        expect(page.locator("#story-list li button")).to_have_count(1)
        expect(page.locator("#story-list li button").first).to_contain_text("Egghead's Return")
        stories = api.get("/api/stories").json()
        assert [s["title"] for s in stories] == ["Egghead's Return"]
        settings = api.get(f"/api/stories/{stories[0]['id']}").json()["settings"]
        assert settings["sentences"] == 1 and settings["temperature"] == 0.5
        expect(page.locator("#uses-settings")).to_contain_text("Continue adds 1 sentence (wildness 0.5")

        # A story begun is kept: write in it, start another, both are listed.
        page.fill("#next-text", "Egghead cracks a joke.")
        page.click("#continue-btn")
        expect(model_passages(page)).to_have_count(1)
        page.fill("#new-title", "The Bookworm Turns")
        page.click("#new-story-form button[type=submit]")
        expect(page.locator("#story-list li")).to_have_count(2)
        watch.check()
        page.close()


class HeldOnCall(FakeEngine):
    """Holds the `call`-th generation (1-based) after `after` pieces until release or cancel."""

    def __init__(self, call: int, after: int, **kwargs):
        super().__init__(**kwargs)
        self.call, self.after, self.calls = call, after, 0
        self.release = HeldEngine().release  # a fresh threading.Event
        self.holding = 0

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        self.calls += 1
        held = self.calls == self.call
        for n, piece in enumerate(super().pieces(prompt, settings, seed, cancel, guidance)):
            if held and n >= self.after and not self.release.is_set():
                self.holding += 1
                while not self.release.wait(0.01) and not (cancel is not None and cancel.is_set()):
                    pass
                self.holding -= 1
            yield piece


def test_a_rewritten_sentence_stays_struck_through_until_its_replacement_is_written(browser, tmp_path):
    checked = []

    def copy_check(sentence):  # the second sentence's first attempt fails the check
        checked.append(sentence)
        return {"score": 9, "words": 9, "episode": "A Riddle a Day", "passage": sentence} if len(checked) == 2 else None

    engine = HeldOnCall(call=3, after=2)  # sentence 1, sentence 2 (refused), then its second attempt is held
    app = create_app(WebConfig(db_path=tmp_path / "rewind.sqlite3", writer=fake_writer(engine, copy_check=copy_check),
                               settings=Settings(seed=5)))  # the same text every run
    with LiveServer(app) as srv:
        page, watch = ready_page(browser, srv.url)
        page.fill("#next-text", "The Riddler leaves a riddle at police headquarters.")
        page.click("#continue-btn")
        wait_until(lambda: engine.holding == 1, "the second attempt to be under way")
        struck = page.locator("#story .passage.draft del.rewritten")
        expect(struck).to_have_text(checked[1].strip())  # what the reader read is still there, marked
        expect(page.locator("#status")).to_contain_text("rewriting a sentence that did not pass its checks")
        draft = page.locator("#story .passage.draft").inner_text()
        assert draft.startswith(checked[0].strip())  # the sentence that passed is untouched
        engine.release.set()
        expect(model_passages(page)).to_have_count(1)
        expect(page.locator("#story del")).to_have_count(0)
        expect(page.locator("#status")).to_contain_text("Your turn")
        assert checked[1].strip() not in model_passages(page).first.inner_text()
        watch.check()
        page.close()


def test_a_passage_s_details_say_which_sentences_were_rewritten_and_why(browser, tmp_path):
    checked = []

    def copy_check(sentence):  # the first sentence's first attempt repeats the corpus
        checked.append(sentence)
        return {"score": 9, "words": 9, "episode": "A Riddle a Day", "passage": sentence} if len(checked) == 1 else None

    app = create_app(WebConfig(db_path=tmp_path / "why.sqlite3", writer=fake_writer(FakeEngine(), copy_check=copy_check),
                               settings=Settings(seed=5)))
    with LiveServer(app) as srv:
        page, watch = ready_page(browser, srv.url)
        page.fill("#next-text", "The Riddler leaves a riddle at police headquarters.")
        page.click("#continue-btn")
        expect(model_passages(page)).to_have_count(1)
        page.locator("#story .prov-btn").click()
        expect(page.locator("#story .prov-pop .prov-redone")).to_have_text(
            "While writing, the model rewrote 1 sentence before you saw the final text: "
            "one repeated a training episode word for word.")
        watch.check()
        page.close()


def test_alternatives_offer_as_many_takes_as_asked_each_pickable(browser, tmp_path):
    from batplots.story.take import take_seeds
    from tests.test_web_alternatives import BadSeedEngine

    engine = BadSeedEngine(bad={take_seeds(11, 3)[1]})  # take 2 of the first batch never ends a sentence
    app = create_app(WebConfig(db_path=tmp_path / "alts.sqlite3", writer=fake_writer(engine), settings=Settings(seed=11)))
    with LiveServer(app) as srv:
        page, watch = ready_page(browser, srv.url)
        page.fill("#next-text", "Batman studies the Joker's calling card.")
        page.click("#alternatives-btn")
        cards = page.locator(".alt-card")
        expect(cards).to_have_count(3)
        expect(cards.get_by_role("button", name=re.compile("Use take"))).to_have_count(3)  # none left out
        expect(page.locator(".alt-card.left-out")).to_have_count(0)
        expect(page.locator(".alt-card .alt-note", has_text="Written again")).to_have_count(1)  # the failed one
        expect(page.locator("#alternatives-why")).to_contain_text("The take written again came afterwards")
        texts = [cards.nth(i).locator(".alt-text").inner_text() for i in range(3)]
        assert len(set(texts)) == 3 and all(t.strip() for t in texts)
        again = page.locator(".alt-card", has=page.locator(".alt-note", has_text="Written again"))
        written_again = again.locator(".alt-text").inner_text()
        again.get_by_role("button").click()  # and it can be picked
        expect(model_passages(page)).to_have_text([written_again])
        watch.check()
        page.close()


def test_provenance_in_a_fan_s_words_a_named_button_the_episode_and_the_shared_words_marked(browser, tmp_path):
    import json

    from batplots.corpus import guard as guardlib
    from tests.test_guard import COPIED_8, EPISODES, ORIGINAL, ScriptedEngine

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(e) + "\n" for e in EPISODES), encoding="utf-8")
    engine = ScriptedEngine([COPIED_8])  # every try copies: the guard keeps the least-copying one and flags it
    app = create_app(WebConfig(db_path=tmp_path / "prov.sqlite3",
                               writer=fake_writer(engine, guard=guardlib.guard_for_corpus(corpus)),
                               settings=Settings(sentences=1)))
    with LiveServer(app) as srv:
        page, watch = ready_page(browser, srv.url)
        page.fill("#next-text", ORIGINAL)
        page.click("#continue-btn")
        expect(model_passages(page)).to_have_count(1)
        button = page.locator("#story .prov-btn")
        expect(button).to_have_text("Copied! Closest episode")  # a labelled button, not a bare "i"
        button.click()
        item = page.locator("#story .prov-pop li")
        expect(item.locator("cite")).to_have_text("The Joker Is Wild")
        expect(item.locator("mark")).to_have_count(1)
        assert len(item.locator("mark").inner_text().split()) >= 8  # the shared words, marked
        expect(item).to_contain_text("words in a row are the same")
        watch.check()
        page.close()


def test_an_edit_over_the_passage_limit_is_said_and_not_cut(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "edit.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        story = api.post("/api/stories", json={"title": "Long"}).json()
        api.post(f"/api/stories/{story['id']}/turns", json={"text": "Robin waits.", "version": story["version"]})
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(f"{srv.url}/#story={story['id']}")
        page.locator("#story .passage.user").first.click()
        area = page.locator(".passage-editor textarea")
        area.focus()
        page.keyboard.press("End")
        page.keyboard.insert_text(" Holy paste" * 300)
        message = page.locator(".passage-editor .editor-message")
        expect(message).to_contain_text("one passage holds at most 2000")
        assert len(area.input_value()) == len("Robin waits.") + len(" Holy paste") * 300  # nothing cut
        area.fill("Robin waits, patiently.")
        expect(message).to_have_text("")
        page.get_by_role("button", name="Save passage").click()
        expect(page.locator("#story .passage.user .passage-text")).to_have_text(["Robin waits, patiently."])
        watch.check()
        page.close()
