"""Accounts, as `batplots serve` configures a network address: real uvicorn on
127.0.0.1 with that SecurityConfig, real SQLite, real Argon2 hashes, the scripted
fake generator. Sessions, cookie flags, the login rate limit, logout, per-user
stories and caps, and public share links."""

import re

import httpx
import pytest

from batplots.store import accounts
from batplots.store.stories import Store
from batplots.store import stories as storelib
from batplots.web import login as loginlib
from batplots.web.security import SESSION_COOKIE, SecurityConfig
from tests.webserver import WAIT_S, assert_error, make_server, new_story  # noqa: F401

NETWORK = SecurityConfig(allowed_hosts=None, accounts=True, api_key=None, v1_open=False)
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}


@pytest.fixture
def net(make_server):
    srv = make_server(security=NETWORK)
    for name, password in PASSWORDS.items():
        accounts.add_user(srv.app.state.store, name, password)
    return srv


def log_in(srv, name, password=None, **headers) -> httpx.Response:
    return srv.client.post("/login", data={"name": name, "password": password or PASSWORDS[name], "next": "/"},
                           headers=headers)


def session_client(srv, name) -> httpx.Client:
    r = log_in(srv, name)
    assert r.status_code == 303, r.text
    client = httpx.Client(base_url=srv.url, timeout=WAIT_S, cookies={SESSION_COOKIE: r.cookies[SESSION_COOKIE]})
    srv.client.cookies.clear()
    return client


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_endpoint_without_a_session_is_401(net):
    c = net.client
    checked = 0
    for path, methods in net.app.openapi()["paths"].items():  # every documented endpoint
        if path in ("/login", "/logout", "/healthz", "/s/{share_id}") or path.startswith("/v1"):
            continue  # public, or guarded by the API key (below)
        for method in methods:
            r = c.request(method.upper(), fill(path), json={"version": 1, "text": "Pwned."})
            assert r.status_code == 401, (method, path, r.text)
            assert "log in first" in r.json()["detail"]
            checked += 1
    assert checked >= 14  # the story API and /api/session
    for path in ("/docs", "/openapi.json", "/api/stories?limit=1"):
        assert c.get(path).status_code == 401, path
    page = c.get("/?x=1", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F%3Fx%3D1"
    r = c.post("/v1/completions", json={"prompt": "Batman", "max_tokens": 2})
    assert r.status_code == 403 and "--api-key" in r.json()["error"]["message"]  # no key set: /v1 is off
    for public in ("/login", "/healthz", "/static/app.css"):
        assert c.get(public).status_code == 200, public
    assert "To the Batcave!" in c.get("/login").text


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(net):
    r = log_in(net, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    token = r.cookies[SESSION_COOKIE]
    assert len(token) >= 40 and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert f"Max-Age={accounts.SESSION_DAYS * 86400}" in cookie and "Secure" not in cookie  # plain http here
    # Behind a TLS proxy on this machine (X-Forwarded-Proto from 127.0.0.1), the cookie is Secure.
    assert "Secure" in log_in(net, "alice", **{"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    net.client.cookies.clear()
    with httpx.Client(base_url=net.url, timeout=WAIT_S, cookies={SESSION_COOKIE: token}) as alice:
        assert alice.get("/api/session").json() == {"user": "alice", "accounts": True, "warning": None,
                                                    "public_url": None}
        assert alice.get("/", headers={"Accept": "text/html"}).status_code == 200
        assert alice.get("/login").status_code == 303  # already signed in
        out = alice.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    with httpx.Client(base_url=net.url, timeout=WAIT_S, cookies={SESSION_COOKIE: token}) as replay:
        assert replay.get("/api/stories").status_code == 401  # the old token is dead on the server too
    assert accounts.session_user(net.app.state.store, token) is None


def test_wrong_passwords_and_the_login_rate_limit(net):
    for name, password in (("alice", "not-her-password"), ("nobody", "whatever-123")):
        r = log_in(net, name, password)
        assert r.status_code == 401 and "Wrong name or password." in r.text and SESSION_COOKIE not in r.cookies
    for _ in range(loginlib.MAX_LOGIN_FAILURES - 2):
        assert log_in(net, "alice", "guess-guess-guess").status_code == 401
    limited = log_in(net, "alice")  # even the right password waits now
    assert limited.status_code == 429 and "Too many failed logins" in limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= loginlib.LOGIN_WINDOW_SECONDS + 1
    assert log_in(net, "bob").status_code == 429  # the same client address is limited for every name
    assert_error(net.client.post("/login", json={"name": "bob"}), 415, "as a form")


def test_the_limiter_window_slides(tmp_path):
    now = [1000.0]
    limiter = loginlib.LoginLimiter(Store(tmp_path / "limit.sqlite3"), clock=lambda: now[0])
    for _ in range(loginlib.MAX_LOGIN_FAILURES):
        assert limiter.begin("1.2.3.4", "alice")[1] == 0
    attempt, wait = limiter.begin("1.2.3.4", "alice")
    assert attempt is None and wait == pytest.approx(loginlib.LOGIN_WINDOW_SECONDS)
    now[0] += loginlib.LOGIN_WINDOW_SECONDS + 0.1
    attempt, wait = limiter.begin("1.2.3.4", "alice")
    assert wait == 0
    limiter.succeeded(attempt)  # a correct password takes its attempt back
    for _ in range(loginlib.MAX_LOGIN_FAILURES - 1):
        assert limiter.begin("1.2.3.4", "alice")[1] == 0


def test_login_redirects_stay_on_this_server_and_cross_site_logins_are_refused(net):
    for target, expected in (("/#story=abc", "/#story=abc"), ("//evil.example/", "/"), ("https://evil.example", "/"),
                             ("/\\evil.example", "/")):
        r = net.client.post("/login", data={"name": "bob", "password": PASSWORDS["bob"], "next": target})
        assert r.headers["location"] == expected, target
        net.client.cookies.clear()
    r = log_in(net, "bob", Origin="http://evil.example")  # login CSRF
    assert r.status_code == 403 and SESSION_COOKIE not in r.cookies


def test_each_story_belongs_to_its_author_and_share_links_stay_public(net):
    with session_client(net, "alice") as alice, session_client(net, "bob") as bob:
        story = new_story(alice, title="Alice's Caper")
        sid, v, turn = story["id"], story["version"], story["turns"][0]["id"]
        assert [s["id"] for s in alice.get("/api/stories").json()] == [sid]
        assert bob.get("/api/stories").json() == []
        for method, path, body in [
            ("GET", f"/api/stories/{sid}", None), ("PATCH", f"/api/stories/{sid}", {"version": v, "title": "Mine"}),
            ("DELETE", f"/api/stories/{sid}?version={v}", None),
            ("POST", f"/api/stories/{sid}/turns", {"text": "Bob was here.", "version": v}),
            ("PATCH", f"/api/stories/{sid}/turns/{turn}", {"text": "Bob.", "version": v}),
            ("POST", f"/api/stories/{sid}/continue", {"version": v}), ("POST", f"/api/stories/{sid}/retry", {"version": v}),
            ("POST", f"/api/stories/{sid}/alternatives", {"version": v}),
            ("POST", f"/api/stories/{sid}/undo", {"version": v}), ("POST", f"/api/stories/{sid}/redo", {"version": v}),
            ("GET", f"/api/stories/{sid}/export?format=txt", None),
        ]:
            r = bob.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        assert net.engine.started == 0
        assert alice.get(f"/api/stories/{sid}").json() == story  # untouched
        with httpx.Client(base_url=net.url, timeout=WAIT_S) as anyone:  # no session at all
            page = anyone.get(f"/s/{story['share_id']}")
            assert page.status_code == 200 and "Alice&#x27;s Caper" in page.text
            assert anyone.get(f"/api/stories/{sid}").status_code == 401


def test_story_caps_are_per_user(net, monkeypatch):
    monkeypatch.setattr(storelib, "MAX_STORIES", 2)
    with session_client(net, "alice") as alice, session_client(net, "bob") as bob:
        for _ in range(2):
            assert alice.post("/api/stories", json={}).status_code == 201
        assert_error(alice.post("/api/stories", json={}), 422, "you already have 2 stories")
        assert bob.post("/api/stories", json={}).status_code == 201  # alice's cap is not bob's


def test_a_new_password_logs_out_every_session(net):
    with session_client(net, "alice") as alice:
        assert alice.get("/api/stories").status_code == 200
        accounts.set_password(net.app.state.store, "alice", "brand-new-secret")
        assert alice.get("/api/stories").status_code == 401
    assert log_in(net, "alice", "brand-new-secret").status_code == 303


def test_v1_on_a_network_address_takes_the_key_not_a_session(make_server):
    key = "network-key-0123456789"
    srv = make_server(security=SecurityConfig(allowed_hosts=None, accounts=True, api_key=key, v1_open=False))
    accounts.add_user(srv.app.state.store, "alice", PASSWORDS["alice"])
    body = {"prompt": "Batman", "max_tokens": 2}
    assert srv.client.post("/v1/completions", json=body).status_code == 401
    with session_client(srv, "alice") as alice:
        assert alice.post("/v1/completions", json=body).status_code == 401  # a session is not the key
    r = srv.client.post("/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


def test_no_auth_warning_reaches_the_page(make_server):
    srv = make_server(security=SecurityConfig(allowed_hosts=None, v1_open=False, warning="--no-auth: no login here"))
    assert srv.client.get("/api/session").json() == {"user": None, "accounts": False,
                                                       "warning": "--no-auth: no login here", "public_url": None}
    assert srv.client.post("/login", data={"name": "x", "password": "y"}).status_code == 404
