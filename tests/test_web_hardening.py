"""Issue 23's low rows, over real HTTP on 127.0.0.1: a malformed Origin is 403, the API's
documentation pages get a CSP and cannot be framed, an anonymous /healthz on a server
with accounts shows no file paths, and /v1 takes JSON types strictly."""

import pytest

from batplots.store import accounts
from batplots.web.app import DOCS_CSP
from batplots.web.security import SESSION_COOKIE, SecurityConfig
from tests.fakegen import FakeEngine
from tests.webserver import make_server  # noqa: F401

NETWORK = SecurityConfig(allowed_hosts=None, accounts=True, api_key="k" * 20, v1_open=False)


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "https://[zz]:80"])
def test_a_malformed_origin_is_refused_with_403_not_500(make_server, origin):  # noqa: F811
    srv = make_server()
    for path in ("/api/stories", "/login", "/logout", "/v1/completions"):
        r = srv.client.post(path, json={}, headers={"Origin": origin})
        assert r.status_code == 403, (path, r.text)
        assert "is not a valid scheme://host[:port]" in r.text
    assert srv.client.post("/api/stories", json={}).status_code == 201


def test_the_documentation_pages_have_a_csp_that_allows_only_their_own_script_and_no_framing(make_server):  # noqa: F811
    srv = make_server()
    for path in ("/docs", "/redoc"):
        r = srv.client.get(path)
        csp = r.headers["content-security-policy"]
        assert r.status_code == 200 and "frame-ancestors 'none'" in csp and r.headers["x-frame-options"] == "DENY"
        assert csp.startswith(DOCS_CSP.split("{hashes}")[0]) and "'unsafe-inline'" not in csp.split(";")[1]
        assert int(r.headers["content-length"]) == len(r.content)
    assert "'sha256-" in srv.client.get("/docs").headers["content-security-policy"]  # Swagger's one inline script


def test_an_anonymous_healthz_on_a_server_with_accounts_shows_no_file_paths(make_server):  # noqa: F811
    srv = make_server(engine=FakeEngine(label="/home/batman/models/batman66"), security=NETWORK)
    anonymous = srv.client.get("/healthz").json()
    assert anonymous == {"status": "ready", "model": "batman66",
                         "models": [{"role": None, "name": "batman66", "label": "batman66", "status": "ready",
                                     "default": True}]}
    assert "/home" not in str(anonymous)
    accounts.add_user(srv.app.state.store, "alice", "alice-secret-1")
    r = srv.client.post("/login", data={"name": "alice", "password": "alice-secret-1"})
    assert SESSION_COOKIE in r.cookies  # the client keeps it
    signed_in = srv.client.get("/healthz").json()
    assert signed_in["model"]["model"] == "/home/batman/models/batman66"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_tokens", True, "max_tokens: Input should be a valid integer"),
    ("max_tokens", "8", "max_tokens: Input should be a valid integer"),
    ("stream", "yes", "stream: Input should be a valid boolean"),
    ("temperature", "0.5", "temperature: Input should be a valid number"),
    ("echo", 1, "echo: Input should be a valid boolean"),
])
def test_v1_takes_json_types_strictly(make_server, field, value, message):  # noqa: F811
    srv = make_server()
    r = srv.client.post("/v1/completions", json={"prompt": "Batman", "max_tokens": 2, field: value})
    assert r.status_code == 400 and r.json()["error"]["message"] == message
    ok = srv.client.post("/v1/completions", json={"prompt": "Batman", "max_tokens": 2, "temperature": 1})
    assert ok.status_code == 200  # a whole number where a float goes is a number


def test_a_busy_database_while_checking_the_session_is_503_not_500(make_server, monkeypatch):  # noqa: F811
    from batplots.store.db import Unavailable

    srv = make_server(security=NETWORK)

    def busy(store, token):
        raise Unavailable("the story database is busy: another change held it for over 5 s; nothing was changed, "
                          "try again")

    monkeypatch.setattr(accounts, "session_user", busy)
    r = srv.client.get("/api/stories", cookies={SESSION_COOKIE: "some-token"})
    assert r.status_code == 503 and "busy" in r.json()["detail"]


def test_a_loopback_server_refuses_requests_a_proxy_forwarded_from_elsewhere(make_server):  # noqa: F811
    srv = make_server()  # loopback, no accounts: one person's tool
    outside = {"X-Forwarded-For": "203.0.113.5"}
    for method, path in (("GET", "/api/stories"), ("POST", "/api/stories"), ("GET", "/v1/models")):
        r = srv.client.request(method, path, json={} if method == "POST" else None, headers=outside)
        assert r.status_code == 403 and "forwarded from 203.0.113.5" in r.text, (path, r.text)
    assert srv.client.get("/api/stories", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    assert srv.client.post("/api/stories", json={}).status_code == 201
    assert srv.client.get("/api/stories").json()[0]["title"]  # nothing from outside was created
    assert len(srv.client.get("/api/stories").json()) == 1
