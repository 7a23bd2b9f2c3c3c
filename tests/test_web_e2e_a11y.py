"""Issue 16 in real Chromium: keyboard-only turns, axe-core with no serious violations,
the provenance popover, paragraphs, authorship labels, optional marks and share links.
axe-core comes from the npm registry (tests/js, installed by `make test`), never a CDN."""

import re
from pathlib import Path

import pytest

from tests.fakegen import fake_sentences
from tests.test_web_e2e import PHONE, STEP_MS, browser, expect, model_passages  # noqa: F401
from tests.test_web_e2e_flow import open_page, served, wait_js  # noqa: F401
from tests.webserver import new_story

AXE = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")
MAX_TABS = 60  # bound on the Tab presses that look for the toolbar


def axe_violations(page):
    """axe-core's serious and critical violations on the page as it is now, as readable lines."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make test-js-deps` (npm ci in tests/js)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in SERIOUS]


def story_with_turns(api, passages):
    story = new_story(api, text=None)
    for i in range(passages):
        if i % 2:
            story = api.post(f"/api/stories/{story['id']}/continue",
                             json={"version": story["version"], "seed": i}).json()
        else:
            story = api.post(f"/api/stories/{story['id']}/turns",
                             json={"text": f"Robin counts to {i}.", "version": story["version"]}).json()
    return story


def test_keyboard_only_turns(browser, served):
    srv, api = served(takes=2)  # two takes: each model passage has a "why" (a provenance button)
    story = story_with_turns(api, 8)
    sid = story["id"]
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={sid}")
    expect(page.locator("#story .prov-btn")).to_have_count(4)

    # One tab stop for the story: from the top of the page to the toolbar, the story is passed once.
    page.locator("body").focus()
    stops = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
        if stops[-1] == "retry-btn":
            break
    assert stops[-1] == "retry-btn" and sum("passage" in s or "prov-btn" in s for s in stops) == 1, stops

    # Arrow keys inside; Enter edits; Escape leaves the editor with focus back on the passage.
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#story .passage").last).to_be_focused()
    page.keyboard.press("Home")
    expect(page.locator("#story .passage").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#story .passage").nth(1)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#story .prov-btn").first).to_be_focused()
    page.keyboard.press("Enter")  # the provenance popover opens beside the passage
    expect(page.locator("#story .prov-pop").first).to_be_visible()
    expect(page.locator("#story .prov-pop").first).to_contain_text(re.compile("Why this take: .*best of 2 takes"))
    expect(page.locator("#story .prov-pop .prov-why").first).not_to_contain_text(re.compile("score|log-prob"))
    expect(page.locator("#story .prov-pop .prov-tech").first).to_contain_text("Details for the curious")
    page.keyboard.press("Escape")
    expect(page.locator("#story .prov-pop").first).to_be_hidden()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(page.locator(".passage-editor textarea")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#story .passage").nth(1)).to_be_focused()

    # A turn by keyboard: type, Ctrl+Enter; the pen stays in the box while the model writes.
    srv.engine.delay = 0.03
    page.locator("#next-text").focus()
    page.keyboard.type("Batman checks the Batcomputer.")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#story .passage.draft")).to_have_text(re.compile(r"\w"))
    expect(page.locator("#next-text")).to_be_focused()
    expect(model_passages(page)).to_have_count(5)
    # Retry: the button disables itself, focus goes to Stop (never the page body), then the box.
    page.locator("#retry-btn").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#stop-btn")).to_be_focused()
    expect(page.locator("#next-text")).to_be_focused()
    # Escape stops a generation.
    page.keyboard.press("Control+Enter")
    expect(page.locator("#story .passage.draft")).to_have_text(re.compile(r"\w"))
    page.keyboard.press("Escape")
    expect(page.locator("#status")).to_have_text("Stopped. The model added nothing.")
    expect(page.locator("#next-text")).to_be_focused()
    # Undo keeps focus on Undo; Redo, once nothing is left to redo, hands it to the box.
    page.locator("#undo-btn").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(re.compile("^Removed the last passage"))
    expect(page.locator("#undo-btn")).to_be_focused()
    page.locator("#redo-btn").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Brought it back.")
    expect(page.locator("#redo-btn")).to_be_disabled()
    expect(page.locator("#next-text")).to_be_focused()
    # Escape closes Alternatives.
    srv.engine.delay = 0
    page.locator("#alternatives-btn").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#alternatives-heading")).to_have_text("Pick a continuation")
    page.keyboard.press("Escape")
    expect(page.locator("#alternatives")).to_be_hidden()
    expect(page.locator("#next-text")).to_be_focused()
    watch.check()
    ctx.close()


def test_axe_finds_no_serious_violations(browser, served):
    srv, api = served(takes=2)
    story = story_with_turns(api, 4)
    sid = story["id"]
    # axe is injected as a script: this context alone lets the test page run it past the CSP.
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={sid}", bypass_csp=True)
    expect(model_passages(page)).to_have_count(2)
    assert axe_violations(page) == []
    # The check can fail: a button with no name is a critical violation.
    page.evaluate("document.body.append(Object.assign(document.createElement('button'), {id: 'nameless'}))")
    assert [v for v in axe_violations(page) if v.startswith("button-name (critical)")]
    page.evaluate("document.getElementById('nameless').remove()")
    page.click(".settings summary")
    page.click("#model-details summary")
    page.locator("#story .prov-btn").first.click()
    assert axe_violations(page) == []
    page.locator("#story .passage.user").first.click()  # the editor, and a conflict shown beside it
    latest = api.get(f"/api/stories/{sid}").json()
    api.patch(f"/api/stories/{sid}/turns/{latest['turns'][0]['id']}",
              json={"text": "Elsewhere.", "version": latest["version"]})
    page.get_by_role("button", name="Save passage").click()
    expect(page.locator(".conflict")).to_be_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Take theirs").click()
    page.click("#alternatives-btn")
    expect(page.locator("#alternatives-heading")).to_have_text("Pick a continuation")
    assert axe_violations(page) == []
    share = page.locator("#share-link").input_value()
    page.goto(share)
    assert axe_violations(page) == []
    phone = ctx.browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, bypass_csp=True)
    mobile = phone.new_page()
    mobile.goto(f"{srv.url}/#story={sid}")
    expect(model_passages(mobile)).to_have_count(2)
    assert axe_violations(mobile) == []
    phone.close()
    watch.check(expected=["status of 409"])
    ctx.close()


def test_paragraphs_authorship_marks_provenance_target_and_share_links(browser, served):
    srv, api = served(takes=2)
    story = new_story(api, text="Gotham sleeps.\n\nBut not the Joker.")
    sid = story["id"]
    story = api.post(f"/api/stories/{sid}/continue", json={"version": story["version"]}).json()
    model = story["turns"][1]
    # Opened by another name than 127.0.0.1: the share link uses the name the page was opened by.
    port = srv.url.rsplit(":", 1)[1]
    ctx, page, watch = open_page(browser, f"http://localhost:{port}/#story={sid}")
    expect(page.locator("#share-link")).to_have_value(re.compile(rf"^http://localhost:{port}/s/"))
    # A paragraph per passage; a blank line in the writer's text starts another.
    expect(page.locator("#story .passage.user p")).to_have_text(["Gotham sleeps.", "But not the Joker."])
    expect(page.locator("#story .turn")).to_have_count(2)
    # The provenance target is 24 px or more.
    box = page.locator("#story .prov-btn").bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24, box
    # Authorship says what happened: edited -> "Model, edited by you"; nothing of it left -> the writer's.
    first_sentence = fake_sentences(model["text"])[0]
    latest = api.get(f"/api/stories/{sid}").json()
    latest = api.patch(f"/api/stories/{sid}/turns/{model['id']}",
                       json={"text": first_sentence + " Robin sneezes.", "version": latest["version"]}).json()
    page.reload()
    expect(page.locator("#story .passage.model .visually-hidden")).to_have_text("Model, edited by you: ")
    api.patch(f"/api/stories/{sid}/turns/{model['id']}", json={"text": "Alfred polishes the silver.",
                                                                "version": latest["version"]})
    page.reload()
    expect(page.locator("#story .passage.user .visually-hidden")).to_have_text(["You: ", "You: "])
    # Marks are optional, and the choice is remembered.
    assert api.post(f"/api/stories/{sid}/continue", json={"version": latest["version"] + 1}).status_code == 200
    page.reload()
    expect(page.locator("#story .passage.model")).to_have_count(1)
    italic = "getComputedStyle(document.querySelector('#story .passage.model')).fontStyle"
    assert page.evaluate(italic) == "italic"
    page.uncheck("#marks-toggle")
    assert page.evaluate(italic) == "normal"
    page.reload()
    expect(page.locator("#story .passage.model")).to_have_count(1)
    expect(page.locator("#marks-toggle")).not_to_be_checked()
    assert page.evaluate(italic) == "normal"
    watch.check()
    ctx.close()


def test_share_links_use_the_public_url(browser, served):
    srv, api = served(public_url="https://bats.example.org/")
    story = new_story(api)
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={story['id']}")
    expect(page.locator("#share-link")).to_have_value(f"https://bats.example.org/s/{story['share_id']}")
    watch.check()
    ctx.close()
