"""The case file and the beat buttons in real Chromium (issue 14): a passage fills the case
file in, an edit is kept across a reload (and a change made meanwhile in another tab is
shown, not overwritten), a beat button asks the model for that beat, and the outline lists
the beats. Real app on 127.0.0.1, FakeEngine (the model is beside the point)."""

from tests.test_web_e2e import STEP_MS, browser, expect, model_passages  # noqa: F401
from tests.test_web_e2e_a11y import axe_violations
from tests.test_web_e2e_flow import open_page, served  # noqa: F401
from tests.webserver import new_story

NOBODY = ("Professor Nobody plans to steal the golden egg. Professor Nobody and his henchmen Sniffy and Lefty "
          "hide out at the old mill.")


def field(page, name):
    return page.locator(f"#case-list dd[data-field={name}]")


def test_the_case_file_fills_in_is_edited_and_kept_and_a_beat_button_asks_for_its_beat(browser, served):
    srv, api = served()
    story = new_story(api, text=None)
    sid = story["id"]
    ctx, page, watch = open_page(browser, f"{srv.url}/#story={sid}", bypass_csp=True)  # axe-core is injected
    expect(field(page, "villains")).to_have_text("not yet known")
    expect(page.locator("#outline-empty")).to_be_visible()

    # A passage fills the case file in, and the outline lists its beat.
    page.fill("#next-text", NOBODY)
    page.click("#continue-btn")
    expect(model_passages(page)).to_have_count(1)
    expect(field(page, "villains")).to_contain_text("Professor Nobody")  # and any the model brought in
    expect(field(page, "henchmen")).to_contain_text("Sniffy; Lefty")
    expect(field(page, "hideout")).to_contain_text("old mill")
    expect(field(page, "target")).to_contain_text("golden egg")
    saved = api.get(f"/api/stories/{sid}").json()
    expect(page.locator("#outline li")).to_have_text([b["label"] for b in saved["outline"]])
    assert saved["outline"][0]["beat"] == "crime"

    # Edit a field by keyboard; it is saved with the story's version and kept across a reload.
    page.get_by_role("button", name="Edit case file").click()
    expect(page.get_by_label("Villains (one a line")).to_be_focused()
    page.get_by_label("Villains (one a line").fill("The Sphinx\nKitty Glitter")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Save case file").click()
    expect(page.locator("#case-state")).to_have_text("Case file saved. The fields you changed stay as you wrote them.")
    expect(field(page, "villains")).to_have_text("The Sphinx; Kitty Glitter")
    expect(page.locator("#case-list dt", has_text="Villains")).to_contain_text("(yours)")
    page.reload()
    expect(page.locator("#model-status")).to_contain_text("Model ready")
    expect(field(page, "villains")).to_have_text("The Sphinx; Kitty Glitter")
    assert api.get(f"/api/stories/{sid}").json()["case_file"]["edited"] == ["villains"]

    # A change made elsewhere meanwhile is shown, and what was typed stays in the editor.
    page.get_by_role("button", name="Edit case file").click()
    page.get_by_label("Guests (one a line").fill("Mayor Linseed")
    latest = api.get(f"/api/stories/{sid}").json()
    api.post(f"/api/stories/{sid}/turns", json={"version": latest["version"],
                                                "text": "Batman and Robin are tied to a giant candle."})
    page.get_by_role("button", name="Save case file").click()
    expect(page.locator("#case-state")).to_contain_text("changed in another tab")
    expect(field(page, "deathtrap")).to_contain_text("tied to a giant candle")
    expect(page.get_by_label("Guests (one a line")).to_have_value("Mayor Linseed")
    page.get_by_role("button", name="Save case file").click()
    expect(field(page, "guests")).to_have_text("Mayor Linseed")

    # A beat button continues the story asking for that beat.
    page.get_by_role("button", name="Fight!").click()
    expect(model_passages(page)).to_have_count(2)
    turns = api.get(f"/api/stories/{sid}").json()["turns"]
    assert turns[-1]["author"] == "model" and turns[-1]["meta"]["beat"] == "fight"
    expect(page.locator("#next-text")).to_be_focused()
    assert axe_violations(page) == []
    watch.check(expected=["status of 409"])
    ctx.close()
