"""The page end to end in real headless Chromium (Debian's, driven by Playwright).

The README's screenshots show the real model's text: docs/screenshots.py takes them from a
running `batplots serve`. test_screenshots_desktop_and_phone checks the same views render with
the scripted stand-in (BATPLOTS_SCREENSHOT_DIR keeps its pictures).
"""

import os
import re
import time
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from batplots.web import WebConfig, create_app
from tests.fakegen import FakeEngine, HeldEngine, fake_sentences, fake_writer
from tests.webserver import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
STEP_MS = 30_000  # bound for each wait on the page: generous, as a passing test never waits it out

expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def screenshot_dir(tmp_path):
    path = Path(os.environ.get("BATPLOTS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class PageWatch:
    """Collects what a page did that it must not: errors, and requests leaving the server."""

    def __init__(self, page, base_url):
        self.errors, self.foreign = [], []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("request", lambda req: None if req.url.startswith((base_url, "data:")) else self.foreign.append(req.url))
        page.on("dialog", self._dialog)
        self.dialogs = []

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

    def check(self, expected=()):
        """expected: fragments of console errors this test provoked on purpose."""
        unexpected = [e for e in self.errors if not any(fragment in e for fragment in expected)]
        assert unexpected == [] and self.foreign == []


def ready_page(browser, url):
    """A desktop page open at url once the model is ready, and its PageWatch."""
    page = browser.new_page(viewport=DESKTOP)
    page.set_default_timeout(STEP_MS)
    watch = PageWatch(page, url)
    page.goto(url)
    expect(page.locator("#model-status")).to_contain_text("Model ready")
    return page, watch


def model_passages(page):
    """The text of the model's saved passages (without the screen-reader label)."""
    return page.locator("#story .passage.model:not(.draft) .passage-text")


def test_co_writing_in_the_browser(browser, tmp_path):
    # The first passage stops after a few words until the test has seen them: a page on a
    # slow machine could otherwise miss the draft between its first word and the last.
    engine = HeldEngine(after=3, delay=0.04)
    app = create_app(WebConfig(db_path=tmp_path / "e2e.sqlite3", writer=fake_writer(engine)))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#model-status")).to_contain_text("Model ready")
        expect(page.locator("#story-title")).to_have_text("Untitled episode")
        story_id = api.get("/api/stories").json()[0]["id"]

        # Write (with HTML that must stay text), Continue, and watch the model's words stream in.
        first = 'Commissioner Gordon lifts the red Bat-phone. <img src=x onerror="alert(1)"> "Batman, come quickly!"'
        page.fill("#next-text", first)
        page.click("#continue-btn")
        draft = page.locator("#story .passage.draft")
        expect(draft).to_have_text(re.compile(r"\S+ \S+"))
        early = draft.inner_text()
        engine.release.set()
        expect(model_passages(page)).to_have_count(1)
        done = model_passages(page).first.inner_text()
        assert len(done) > len(early) and done.startswith(early.strip())  # it grew as pieces came
        saved = api.get(f"/api/stories/{story_id}").json()
        assert [t["author"] for t in saved["turns"]] == ["user", "model"]
        assert saved["turns"][0]["text"] == first
        assert len(fake_sentences(saved["turns"][1]["text"])) == 2
        expect(page.locator("#story .passage.user .passage-text")).to_have_text(first)
        assert page.locator("#story img").count() == 0
        expect(page.locator("#next-text")).to_be_focused()  # the pen is handed back
        expect(page.locator("#next-text")).to_have_value("")

        # Retry replaces the model's passage.
        page.click("#retry-btn")
        expect(model_passages(page)).to_have_count(1)
        expect(model_passages(page).first).not_to_have_text(done)
        retried = model_passages(page).first.inner_text()

        # Undo removes it; Redo brings it back.
        page.click("#undo-btn")
        expect(model_passages(page)).to_have_count(0)
        page.click("#redo-btn")
        expect(model_passages(page)).to_have_text([retried])

        # Edit the user's passage in place (keyboard: focus it, Enter, type, Ctrl+Enter saves).
        page.locator("#story .passage.user").first.focus()
        page.keyboard.press("Enter")
        editor = page.locator(".passage-editor textarea")
        expect(editor).to_be_focused()
        editor.fill("Chief O'Hara lifts the red Bat-phone.")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#story .passage.user .passage-text").first).to_have_text("Chief O'Hara lifts the red Bat-phone.")
        expect(page.locator("#story .passage.user.edited")).to_have_count(1)
        expect(page.locator("#story .passage.user").first).to_be_focused()  # back where the edit began

        # Settings per story take effect when changed: one sentence a turn; Ctrl+Enter in the box continues.
        page.click(".settings summary")
        page.select_option("#set-sentences", "1")
        expect(page.locator("#settings-state")).to_contain_text("Saved: Continue adds 1 sentence")
        expect(page.locator("#uses-settings")).to_contain_text("Continue adds 1 sentence")
        page.fill("#next-text", "Batman and Robin slide down the Batpoles.")
        page.locator("#next-text").press("Control+Enter")
        expect(model_passages(page)).to_have_count(2)
        assert len(fake_sentences(model_passages(page).nth(1).inner_text())) == 1

        # Alternatives: three takes side by side; pick the second.
        page.click("#alternatives-btn")
        cards = page.locator(".alt-card")
        expect(cards).to_have_count(3)
        expect(cards.get_by_role("button")).to_have_count(3)
        second = cards.nth(1).locator(".alt-text").inner_text()
        cards.nth(1).get_by_role("button").click()
        expect(page.locator("#alternatives")).to_be_hidden()
        expect(model_passages(page)).to_have_count(3)
        expect(model_passages(page).nth(2)).to_have_text(second)

        # Rename, and reload: everything is still there.
        page.click("#rename-btn")
        page.fill("#rename-input", "The <b>Joker</b>'s Jest")
        page.click("#rename-form button[type=submit]")
        expect(page.locator("#story-title")).to_have_text("The <b>Joker</b>'s Jest")
        before = page.locator("#story .passage").all_inner_texts()
        page.reload()
        expect(page.locator("#story-title")).to_have_text("The <b>Joker</b>'s Jest")
        expect(page.locator("#story .passage")).to_have_text(before)

        # Export as Markdown, authorship marked.
        with page.expect_download() as download:
            page.click("#export-md")
        markdown = Path(download.value.path()).read_text()
        assert "**You:** Commissioner" not in markdown and "**You:** Chief O'Hara" in markdown
        assert markdown.count("**Model:**") == 3 and "\\<b\\>Joker\\</b\\>" in markdown

        # The share link opens a read-only page with the same story.
        share_url = page.locator("#share-link").input_value()
        assert share_url.startswith(f"{srv.url}/s/") and len(share_url.rsplit("/", 1)[1]) >= 20
        reader = context.new_page()
        reader_watch = PageWatch(reader, srv.url)
        reader.goto(share_url)
        expect(reader.locator(".story-title")).to_have_text("The <b>Joker</b>'s Jest")
        expect(reader.locator(".story .turn.model")).to_have_count(3)
        assert reader.locator("textarea, button").count() == 0
        reader_watch.check()

        # A new story, then delete it: the list follows.
        page.fill("#new-title", "Egghead's Return")
        page.click("#new-story-form button[type=submit]")
        expect(page.locator("#story-title")).to_have_text("Egghead's Return")
        expect(page.locator("#story-list li")).to_have_count(2)
        page.click("#delete-btn")
        expect(page.locator("#story-list li")).to_have_count(1)
        expect(page.locator("#story-title")).to_have_text("The <b>Joker</b>'s Jest")
        assert watch.dialogs == ["Delete “Egghead's Return” for good?"]
        watch.check()

        # Phone width: one column, nothing wider than the screen, Continue reachable.
        phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        mobile = phone.new_page()
        mobile_watch = PageWatch(mobile, srv.url)
        mobile.goto(f"{srv.url}/#story={story_id}")
        expect(model_passages(mobile)).to_have_count(3)
        assert mobile.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        expect(mobile.locator("#continue-btn")).to_be_visible()
        mobile_watch.check()
        phone.close()
        context.close()


def test_screenshots_desktop_and_phone(browser, tmp_path, screenshot_dir):
    """The README's views (docs/screenshots.py takes them on the real model): a story in progress
    with three alternatives on offer, at desktop and phone width, with the scripted stand-in."""
    app = create_app(WebConfig(db_path=tmp_path / "shots.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        story = api.post("/api/stories", json={"title": "The Joker's Last Laugh"}).json()
        sid = story["id"]
        for seed, text in [(5, "Commissioner Gordon lifts the red Bat-phone. \"Batman, the Joker has escaped from "
                     "Gotham State Penitentiary!\""), (11, "Batman and Robin slide down the Batpoles.")]:
            story = api.post(f"/api/stories/{sid}/turns", json={"text": text, "version": story["version"]}).json()
            story = api.post(f"/api/stories/{sid}/continue", json={"version": story["version"], "seed": seed}).json()
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        page.goto(f"{srv.url}/#story={sid}")
        expect(model_passages(page)).to_have_count(2)
        page.fill("#next-text", "At the Batcave, the Batcomputer whirs.")
        page.click("#alternatives-btn")
        expect(page.locator(".alt-card")).to_have_count(3)
        page.screenshot(path=str(screenshot_dir / "desktop.png"), full_page=True)
        phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
        mobile = phone.new_page()
        mobile.goto(f"{srv.url}/#story={sid}")
        expect(model_passages(mobile)).to_have_count(2)
        expect(mobile.locator("#stories-drawer")).not_to_have_attribute("open", "")
        mobile.screenshot(path=str(screenshot_dir / "phone.png"))
        assert (screenshot_dir / "desktop.png").stat().st_size > 10_000
        phone.close()
        context.close()


def test_a_stale_tab_is_told_and_shown_the_latest_version(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "tabs.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#story-title")).to_have_text("Untitled episode")
        story = api.get("/api/stories").json()[0]
        # Another tab adds a passage behind this one's back.
        api.post(f"/api/stories/{story['id']}/turns", json={"text": "Robin was here first.", "version": story["version"]})
        page.fill("#next-text", "Batman arrives.")
        page.click("#continue-btn")
        expect(page.locator("#status")).to_contain_text("changed in another tab")
        expect(page.locator("#story .passage-text")).to_have_text(["Robin was here first."])
        expect(page.locator("#next-text")).to_have_value("Batman arrives.")  # nothing typed is lost
        # Bad input is explained, and the text stays in the box.
        page.fill("#next-text", "   ")
        page.click("#continue-btn")
        expect(model_passages(page)).to_have_count(1)  # empty box: the model goes on alone
        page.fill("#next-text", "x" * 2000)
        page.locator("#next-text").evaluate("(el) => { el.value = el.value + 'yz'; }")  # past the limit, as a paste could
        page.click("#alternatives-btn")  # Continue adds it a passage at a time (test_web_e2e_trouble)
        expect(page.locator("#status")).to_contain_text("at most 2000")
        assert page.locator("#next-text").input_value() == "x" * 2000 + "yz"
        # An edit the server refuses keeps the editor open with the text; Escape leaves it.
        page.locator("#story .passage.user .passage-text").first.click()
        page.locator(".passage-editor textarea").fill("   ")
        page.get_by_role("button", name="Save passage").click()
        expect(page.locator(".passage-editor .editor-message")).to_contain_text("text is empty")  # beside the editor
        expect(page.locator(".passage-editor textarea")).to_have_value("   ")
        page.keyboard.press("Escape")
        expect(page.locator(".passage-editor")).to_have_count(0)
        expect(page.locator("#story .passage.user .passage-text")).to_have_text(["Robin was here first."])
        watch.check(expected=["status of 409", "status of 422"])
        context.close()


def test_stop_cancels_the_generation_and_adds_nothing(browser, tmp_path):
    engine = HeldEngine(after=1)  # under way until Stop, however long the page takes to press it
    app = create_app(WebConfig(db_path=tmp_path / "stop.sqlite3", writer=fake_writer(engine)))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        page = browser.new_page(viewport=DESKTOP)
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#model-status")).to_contain_text("Model ready")
        page.fill("#next-text", "The Riddler leaves a riddle at the museum.")
        page.click("#continue-btn")
        expect(page.locator("#story .passage.draft")).to_have_text(re.compile(r"\w"))
        page.click("#stop-btn")
        expect(page.locator("#status")).to_have_text("Stopped. Your passage was added; the model added nothing.")
        expect(page.locator("#story .passage.draft")).to_have_count(0)
        expect(page.locator("#stop-btn")).to_be_hidden()
        story = api.get("/api/stories").json()[0]
        turns = api.get(f"/api/stories/{story['id']}").json()["turns"]
        assert [t["author"] for t in turns] == ["user"]  # the user's passage is kept, no half model turn
        deadline = time.monotonic() + STEP_MS / 1000
        while engine.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.cancelled == 1
        watch.check()
        page.close()


@pytest.mark.real_model
def test_the_page_on_the_real_embedded_model(browser, tmp_path, real_home):
    """The whole app on the embedded SmolLM2 (plus the default adapter when shipped)."""
    from batplots.model.engine import EngineSpec, Settings
    from batplots.story.writer import open_writer

    app = create_app(WebConfig(db_path=tmp_path / "real.sqlite3", settings=Settings(sentences=1),
                               load_writer=lambda: open_writer(EngineSpec(base="fast"))))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as api:
        page = browser.new_page(viewport=DESKTOP)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#model-status")).to_contain_text("Model ready", timeout=300_000)
        page.fill("#next-text", "Batman and Robin race to the Batmobile.")
        page.click("#continue-btn")
        expect(model_passages(page)).to_have_count(1, timeout=120_000)
        story = api.get("/api/stories").json()[0]
        turn = api.get(f"/api/stories/{story['id']}").json()["turns"][-1]
        assert turn["author"] == "model" and turn["text"].strip()
        assert model_passages(page).first.inner_text().strip() == turn["text"]
        watch.check()
        page.close()
