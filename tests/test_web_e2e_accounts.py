"""Accounts and cross-site protection in real headless Chromium (Debian's, driven by
Playwright) against the real app on 127.0.0.1, configured as `batplots serve` does a
network address: two writers who never see each other's stories, a share link that
works logged out, and a hostile page whose form cannot write."""

import re

import httpx
from playwright import sync_api

from batplots.store import accounts
from batplots.store import stories as storelib
from batplots.web import WebConfig, create_app
from batplots.web.security import SecurityConfig
from tests.fakegen import FakeEngine, fake_writer
from tests.test_web_e2e import DESKTOP, STEP_MS, PageWatch, browser, model_passages  # noqa: F401
from tests.webserver import WAIT_S, LiveServer

expect = sync_api.expect
NETWORK = SecurityConfig(allowed_hosts=None, accounts=True, v1_open=False)
WRITERS = {"alice": ("alice-secret-1", "The Joker robs the Gotham City bank at noon."),
           "bob": ("bob-secret-22", "The Penguin opens an umbrella shop downtown.")}


def log_in(browser, url, name):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    watch = PageWatch(page, url)
    page.goto(url)
    expect(page).to_have_url(f"{url}/login?next=%2F")  # no session: the login page first
    expect(page.locator("h1")).to_have_text("To the Batcave!")
    page.fill("#login-name", name)
    page.fill("#login-password", "wrong-password")
    page.click("button[type=submit]")
    expect(page.locator(".login-error")).to_have_text("Wrong name or password.")
    page.fill("#login-password", WRITERS[name][0])
    page.click("button[type=submit]")
    # Back on the page: it may have opened its first story (#story=ID) before this looks.
    expect(page).to_have_url(re.compile(re.escape(f"{url}/") + r"(#story=[\w-]+)?$"))
    expect(page.locator("#signed-in-as")).to_have_text(f"Signed in as {name}")
    expect(page.locator("#story-title")).to_have_text("Untitled episode")  # a first story, made for them
    return context, page, watch


def write(page, text):
    page.fill("#next-text", text)
    page.click("#continue-btn")
    expect(model_passages(page)).to_have_count(1)
    expect(page.locator("#story .passage.user .passage-text")).to_have_text(text)


def test_two_writers_never_see_each_others_stories(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "two.sqlite3", writer=fake_writer(FakeEngine()), security=NETWORK))
    for name, (password, _) in WRITERS.items():
        accounts.add_user(app.state.store, name, password)
    with LiveServer(app) as srv:
        alice, alice_page, alice_watch = log_in(browser, srv.url, "alice")
        bob, bob_page, bob_watch = log_in(browser, srv.url, "bob")
        write(alice_page, WRITERS["alice"][1])
        write(bob_page, WRITERS["bob"][1])
        alice_story = alice_page.evaluate("() => fetch('/api/stories').then((r) => r.json())")
        bob_story = bob_page.evaluate("() => fetch('/api/stories').then((r) => r.json())")
        assert len(alice_story) == 1 and len(bob_story) == 1 and alice_story[0]["id"] != bob_story[0]["id"]
        alice_id = alice_story[0]["id"]

        # Bob's page knows nothing of Alice's story, even when he asks for it by id.
        bob_page.reload()
        expect(bob_page.locator("#story-list li")).to_have_count(1)
        # Alice's own words, not a villain's name (the scripted model may write "The Joker" for Bob too).
        expect(bob_page.locator("#story")).not_to_contain_text(WRITERS["alice"][1])
        status = bob_page.evaluate(f"() => fetch('/api/stories/{alice_id}').then((r) => r.status)")
        assert status == 404
        bob_page.goto(f"{srv.url}/#story={alice_id}")
        expect(bob_page.locator("#story")).to_contain_text(WRITERS["bob"][1])
        expect(bob_page.locator("#story")).not_to_contain_text(WRITERS["alice"][1])

        # Alice's share link works for anyone, logged out, and is read-only.
        share = alice_page.locator("#share-link").input_value()
        stranger = browser.new_context(viewport=DESKTOP)
        reader = stranger.new_page()
        reader.set_default_timeout(STEP_MS)
        reader.goto(share)
        expect(reader.locator(".story")).to_contain_text(WRITERS["alice"][1])
        assert reader.locator("textarea, form, button").count() == 0
        reader.goto(srv.url)
        expect(reader).to_have_url(f"{srv.url}/login?next=%2F")  # the app itself still needs a login

        # Logging out ends Alice's session; her old page is sent to the login page.
        alice_page.click("#logout-form button")
        expect(alice_page).to_have_url(f"{srv.url}/login")
        alice_page.goto(srv.url)
        expect(alice_page).to_have_url(f"{srv.url}/login?next=%2F")
        expect(bob_page.locator("#signed-in-as")).to_have_text("Signed in as bob")  # bob is still in
        for watch in (alice_watch, bob_watch):
            watch.check(expected=("401", "404"))  # the failed login and bob's probe, on purpose
        for context in (alice, bob, stranger):
            context.close()


def test_a_hostile_page_cannot_write_to_a_loopback_server(browser, tmp_path):
    """A page on another site posts a form to the app on 127.0.0.1 (the attack that
    filled the story cap): the browser sends its Origin, the app refuses it with 403,
    and nothing is created. (Chromium itself blocks a no-cors fetch from a public page
    to loopback; tests/test_web_security.py sends such requests with their Origin.)"""
    app = create_app(WebConfig(db_path=tmp_path / "victim.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=WAIT_S) as api:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        answers = []
        page.on("response", lambda r: answers.append((r.url, r.status)) if r.url.startswith(srv.url) else None)
        # A text/plain form whose body reads as JSON: no preflight, the classic CSRF.
        hostile = f"""<!doctype html><html><body>
<form id="f" method="post" action="{srv.url}/api/stories" enctype="text/plain">
<input name='{{"title": "pwned", "x": "' value='"}}'></form>
<script>document.getElementById("f").submit();</script></body></html>"""
        page.route("http://evil.test/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                        body=hostile))
        page.goto("http://evil.test/")
        page.wait_for_url(f"{srv.url}/api/stories")  # the form's navigation arrived (and was refused)
        assert [status for url, status in answers] == [403]
        assert "cross-site request refused" in page.content()
        assert api.get("/api/stories").json() == []
        assert api.post("/api/stories", json={}).status_code == 201  # the owner's own client still can
        context.close()


def test_the_story_drawer_pages_with_more_case_files(browser, tmp_path):
    app = create_app(WebConfig(db_path=tmp_path / "many.sqlite3", writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=WAIT_S) as api:
        total = storelib.DEFAULT_PAGE + 2
        for i in range(total):
            assert api.post("/api/stories", json={"title": f"Case {i}"}).status_code == 201
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        watch = PageWatch(page, srv.url)
        page.goto(srv.url)
        expect(page.locator("#story-list li")).to_have_count(storelib.DEFAULT_PAGE)
        expect(page.locator("#story-title")).to_have_text(f"Case {total - 1}")  # the newest opens
        page.click("#more-stories")
        expect(page.locator("#story-list li")).to_have_count(total)
        expect(page.locator("#more-stories")).to_be_hidden()
        expect(page.locator("#story-list li").last).to_contain_text("Case 0")
        watch.check()
        context.close()


def test_the_no_auth_warning_is_on_the_page(browser, tmp_path):
    warning = "--no-auth: this server listens on 0.0.0.0 with no login"
    security = SecurityConfig(allowed_hosts=None, v1_open=False, warning=warning)
    app = create_app(WebConfig(db_path=tmp_path / "open.sqlite3", writer=fake_writer(FakeEngine()), security=security))
    with LiveServer(app) as srv:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        page.goto(srv.url)
        expect(page.locator("#no-auth-warning")).to_have_text(f"Warning: {warning}.")
        expect(page.locator("#logout-form")).to_be_hidden()
        context.close()
