"""Issue 16 in real Chromium: alternatives streamed side by side and cancelled, edit
conflicts between two tabs, settings that take effect when changed, and a phone that
follows the draft with Continue always in reach. Real app on 127.0.0.1, FakeEngine."""

import re
import time

import httpx
import pytest

from batplots.web import WebConfig, create_app
from tests.fakegen import FakeEngine, fake_sentences, fake_writer
from tests.test_web_e2e import DESKTOP, PHONE, STEP_MS, PageWatch, browser, expect, model_passages  # noqa: F401
from tests.webserver import LiveServer, new_story, wait_until

ALL_STREAMING = ("[...document.querySelectorAll('.alt-card.streaming .alt-text')]"
                 ".filter((p) => p.textContent.trim()).length === 3")


def wait_js(page, expression, timeout_s=STEP_MS / 1000):
    """Poll a JS expression until it is true (wait_for_function needs eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.03)


@pytest.fixture
def served(tmp_path):
    """(server, API client) over a FakeEngine slow enough to watch; engine on srv.engine."""
    def make(delay=0.0, takes=1, public_url=None):
        engine = FakeEngine(delay=delay)
        writer = fake_writer(engine)
        writer.takes = takes
        app = create_app(WebConfig(db_path=tmp_path / "flow.sqlite3", writer=writer, public_url=public_url))
        srv = LiveServer(app).__enter__()
        srv.engine = engine
        made.append(srv)
        return srv, httpx.Client(base_url=srv.url, timeout=STEP_MS / 1000)
    made = []
    yield make
    for srv in made:
        srv.__exit__(None, None, None)


def open_page(browser, url, viewport=DESKTOP, **context):
    ctx = browser.new_context(viewport=viewport, **context)
    page = ctx.new_page()
    page.set_default_timeout(STEP_MS)
    watch = PageWatch(page, url.split("/#")[0])
    page.goto(url)
    expect(page.locator("#model-status")).to_contain_text("Model ready")
    return ctx, page, watch


def written(page):
    """Wait until the takes are written: each card offers its take, or says why it has none
    (a take far longer than the others is dropped, a duplicate shown once)."""
    expect(page.locator("#alternatives-heading")).to_have_text("Pick a continuation", timeout=STEP_MS)
    cards = page.locator(".alt-card")
    expect(cards).to_have_count(3)
    for i in range(3):
        card = cards.nth(i)
        if not card.get_by_role("button").is_visible():
            expect(card.locator(".alt-note")).to_have_text(re.compile("^(Left out|Same text as take)"))
    assert page.locator(".alt-card").get_by_role("button").count() >= 2


def test_alternatives_stream_side_by_side_and_stop_keep_none_or_pick(browser, served):
    srv, api = served(delay=0.08)
    story = new_story(api, text="The Riddler leaves a riddle at the museum.")
    sid = story["id"]
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={sid}")
    typed = "Batman studies the riddle."

    # Escape while the takes are being written: every take stops, nothing is saved, the text stays.
    page.fill("#next-text", typed)
    page.click("#alternatives-btn")
    wait_js(page, ALL_STREAMING)  # all three are written at once, side by side
    expect(page.locator("#stop-btn")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#alternatives")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Stopped. Nothing was added; your text is still in the box.")
    expect(page.locator("#next-text")).to_have_value(typed)
    # The takes still being written stop (test_web_alternatives counts all three stopping).
    wait_until(lambda: srv.engine.cancelled >= 1 and srv.engine.active == 0, "the takes to stop")
    assert api.get(f"/api/stories/{sid}").json() == story
    srv.engine.delay = 0.005  # no need to watch from here on

    # Keep none once they are written: the story exactly as it was, the text back in the box.
    page.click("#alternatives-btn")
    picks = page.locator(".alt-card").get_by_role("button")
    written(page)
    expect(picks.first).to_be_focused()
    expect(page.locator(".alt-card.chosen .alt-note")).to_have_text("The model's pick")
    page.get_by_role("button", name="Keep none").click()
    expect(page.locator("#alternatives")).to_be_hidden()
    expect(page.locator("#next-text")).to_have_value(typed)
    expect(page.locator("#next-text")).to_be_focused()
    assert api.get(f"/api/stories/{sid}").json() == story

    # Picking a take saves the typed passage and the take together.
    page.click("#alternatives-btn")
    written(page)
    take = page.locator(".alt-card:has(button:visible)").last.locator(".alt-text").inner_text()
    picks.last.click()
    expect(page.locator("#alternatives")).to_be_hidden()
    expect(page.locator("#next-text")).to_have_value("")
    saved = api.get(f"/api/stories/{sid}").json()
    assert [(t["author"], t["text"]) for t in saved["turns"][1:]] == [("user", typed), ("model", take)]
    assert saved["version"] == story["version"] + 2 and fake_sentences(take)
    expect(model_passages(page).last).to_have_text(take)
    watch.check()
    ctx.close()


def test_an_edit_conflict_is_shown_beside_the_editor_with_a_choice(browser, served):
    srv, api = served()
    story = new_story(api, text="Robin waits.")
    sid = story["id"]
    ctx, a, watch_a = open_page(browser, f"{srv.url}/#story={sid}")
    b = ctx.new_page()
    b.set_default_timeout(STEP_MS)
    b.goto(f"{srv.url}/#story={sid}")

    def edit(page, text):
        page.bring_to_front()  # a background tab gets no animation frames: clicks would wait for them
        page.locator("#story .passage.user").first.click()
        page.locator(".passage-editor textarea").fill(text)

    # B saves first; A's save shows B's text beside A's editor, which stays open.
    edit(a, "Robin waits at the Batcave.")
    edit(b, "Robin waits by the Batmobile.")
    b.get_by_role("button", name="Save passage").click()
    expect(b.locator("#story .passage.user .passage-text")).to_have_text("Robin waits by the Batmobile.")
    a.bring_to_front()
    a.get_by_role("button", name="Save passage").click()
    conflict = a.locator(".passage-editor .conflict")
    expect(conflict).to_be_visible()
    expect(conflict.locator(".theirs")).to_have_text("Robin waits by the Batmobile.")
    expect(conflict).to_contain_text("changed in another tab")
    expect(a.get_by_role("button", name="Keep mine")).to_be_focused()
    expect(a.locator(".passage-editor textarea")).to_have_value("Robin waits at the Batcave.")
    expect(a.get_by_role("button", name="Save passage")).to_be_hidden()  # no second Save that overwrites unseen
    # Take theirs: the editor closes on their text; nothing of theirs was overwritten.
    a.get_by_role("button", name="Take theirs").click()
    expect(a.locator(".passage-editor")).to_have_count(0)
    expect(a.locator("#story .passage.user .passage-text")).to_have_text("Robin waits by the Batmobile.")
    assert api.get(f"/api/stories/{sid}").json()["turns"][0]["text"] == "Robin waits by the Batmobile."

    # Keep mine: replaces their text, having shown it.
    edit(a, "Robin waits in the rain.")
    edit(b, "Robin waits for Alfred.")
    b.get_by_role("button", name="Save passage").click()
    expect(b.locator(".passage-editor")).to_have_count(0)
    a.bring_to_front()
    a.get_by_role("button", name="Save passage").click()
    expect(a.locator(".conflict .theirs")).to_have_text("Robin waits for Alfred.")
    a.get_by_role("button", name="Keep mine").click()
    expect(a.locator("#story .passage.user .passage-text")).to_have_text("Robin waits in the rain.")
    assert api.get(f"/api/stories/{sid}").json()["turns"][0]["text"] == "Robin waits in the rain."

    # Another passage added elsewhere is no conflict for this one: saved straight away.
    latest = api.get(f"/api/stories/{sid}").json()
    api.post(f"/api/stories/{sid}/turns", json={"text": "Alfred arrives.", "version": latest["version"]})
    edit(a, "Robin waits alone.")
    a.get_by_role("button", name="Save passage").click()
    expect(a.locator("#status")).to_have_text("Passage saved.")
    expect(a.locator(".conflict")).to_have_count(0)
    assert [t["text"] for t in api.get(f"/api/stories/{sid}").json()["turns"]] == ["Robin waits alone.",
                                                                                  "Alfred arrives."]
    watch_a.check(expected=["status of 409"])
    ctx.close()


def test_settings_take_effect_when_changed(browser, served):
    srv, api = served()
    story = new_story(api)
    sid = story["id"]
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={sid}")
    expect(page.locator("#uses-settings")).to_have_text(re.compile("^Continue adds 2 sentences"))
    page.click(".settings summary")
    page.select_option("#set-sentences", "1")
    page.click("#continue-btn")  # at once: no Save button to forget
    expect(model_passages(page)).to_have_count(1)
    assert len(fake_sentences(model_passages(page).first.inner_text())) == 1
    expect(page.locator("#set-sentences")).to_have_value("1")  # the menu does not go back
    assert api.get(f"/api/stories/{sid}").json()["settings"]["sentences"] == 1
    # A value the model cannot use is refused beside the settings, saying what is allowed and what is in use.
    page.fill("#set-temperature", "5")
    page.keyboard.press("Tab")
    expect(page.locator("#settings-state")).to_contain_text(
        "Not saved: Wildness: temperature must be from 0.0 to 2.0, got 5.0")
    expect(page.locator("#settings-state")).to_contain_text("still uses 1 sentence (wildness 0.8")
    assert api.get(f"/api/stories/{sid}").json()["settings"]["temperature"] == 0.8
    watch.check(expected=["status of 422"])
    ctx.close()


def in_view(page, selector):
    return page.evaluate(f"""() => {{ const n = document.querySelector({selector!r});
        if (!n) return null; const r = n.getBoundingClientRect();
        return r.bottom > 0 && r.top < window.innerHeight; }}""")


def test_phone_keeps_continue_in_reach_and_follows_the_draft(browser, served):
    srv, api = served()
    story = new_story(api)
    sid = story["id"]
    for i in range(12):  # a long story: 24 passages
        story = api.post(f"/api/stories/{sid}/continue", json={"version": story["version"], "seed": i}).json()
        story = api.post(f"/api/stories/{sid}/turns", json={"text": f"Robin counts to {i}.",
                                                             "version": story["version"]}).json()
    api.patch(f"/api/stories/{sid}", json={"version": story["version"], "settings": {"sentences": 4}})
    srv.engine.delay = 0.06  # slow from here on: slow enough to scroll away mid-passage
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={sid}", viewport=PHONE, is_mobile=True, has_touch=True)
    expect(page.locator(".turn")).to_have_count(25)
    assert page.evaluate("window.scrollY") == 0  # a first visit, nothing scrolled
    for selector in ("#next-text", "#continue-btn"):
        box = page.locator(selector).bounding_box()
        assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], (selector, box)

    # The view follows the draft while it is written...
    page.click("#continue-btn")
    draft = page.locator("#story .passage.draft")
    expect(draft).to_have_text(re.compile(r"\w+ \w+ \w+"))
    wait_js(page, "document.querySelector('#story .passage.draft').textContent.split(' ').length > 12")
    assert in_view(page, "#story .passage.draft")
    # ...until the reader scrolls away; then it stays where they are.
    page.mouse.wheel(0, -4000)
    wait_js(page, "window.scrollY < 1500")
    where = page.evaluate("window.scrollY")
    wait_js(page, "document.querySelector('#story .passage.draft').textContent.split(' ').length > 24")
    assert in_view(page, "#story .passage.draft") is False and abs(page.evaluate("window.scrollY") - where) < 5
    expect(model_passages(page)).to_have_count(13, timeout=30_000)
    watch.check()
    ctx.close()
