"""Loopback protections and /v1 access over real HTTP on 127.0.0.1 (real app, real
SQLite, the scripted fake generator): the Host allowlist against DNS rebinding, the
Origin check against cross-site writes, the /v1 key and OpenAI's error shape, and
abandoned non-streamed completions."""

import threading

import httpx
import pytest

from batplots.web.security import LOOPBACK_NAMES, SecurityConfig, SecurityError, serving_config
from tests.fakegen import FakeEngine
from tests.webserver import WAIT_S, assert_error, make_server, new_story, srv, wait_until  # noqa: F401

KEY = "k" * 8 + "-test-key-123456"


def port_of(srv) -> str:
    return srv.url.rsplit(":", 1)[1]


def test_only_loopback_host_names_are_answered(srv):
    c, port = srv.client, port_of(srv)
    story = new_story(c)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST.", "127.0.0.1"):
        assert c.get("/api/stories", headers={"Host": host}).status_code == 200, host
    # A hostile page whose DNS name now points at 127.0.0.1 sends its own name.
    for host in (f"evil.example:{port}", "127.0.0.1.evil.example", "", f"192.168.1.9:{port}"):
        for path in ("/api/stories", f"/api/stories/{story['id']}", "/", "/healthz", f"/s/{story['share_id']}"):
            r = c.get(path, headers={"Host": host})
            assert r.status_code == 403, (host, path)
        assert "--allowed-host" in r.json()["detail"]
    r = c.post("/api/stories", headers={"Host": f"evil.example:{port}"}, json={})
    assert r.status_code == 403 and len(c.get("/api/stories").json()) == 1


def test_allowed_host_names_are_added(make_server):
    srv = make_server(security=SecurityConfig(allowed_hosts=frozenset(LOOPBACK_NAMES + ("batcave.lan",))))
    port = port_of(srv)
    assert srv.client.get("/api/stories", headers={"Host": f"batcave.lan:{port}"}).status_code == 200
    assert srv.client.get("/api/stories", headers={"Host": f"evil.lan:{port}"}).status_code == 403


def test_cross_site_writes_are_refused(srv):
    c, port = srv.client, port_of(srv)
    story = new_story(c)
    sid, v = story["id"], story["version"]
    hostile = [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": f"http://localhost:{port}"},
               {"Origin": f"https://127.0.0.1:{port}0"}, {"Sec-Fetch-Site": "cross-site"}]
    for headers in hostile:
        for method, path, body in [("POST", "/api/stories", {}),  # a form or no-cors fetch filling the cap
                                   ("PATCH", f"/api/stories/{sid}", {"version": v, "title": "Pwned"}),
                                   ("POST", f"/api/stories/{sid}/turns", {"text": "Pwned.", "version": v}),
                                   ("POST", f"/api/stories/{sid}/continue", {"version": v}),
                                   ("DELETE", f"/api/stories/{sid}?version={v}", None),
                                   ("POST", "/v1/completions", {"prompt": "Batman", "max_tokens": 2})]:
            r = c.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (headers, method, path, r.text)
            message = r.json()["error"]["message"] if path.startswith("/v1") else r.json()["detail"]
            assert "cross-site request refused" in message
    assert c.get("/api/stories").json()[0]["version"] == v and len(c.get("/api/stories").json()) == 1
    assert srv.engine.started == 0
    # This server's own page (same origin), and clients that send no Origin, may write.
    same = c.post("/api/stories", json={}, headers={"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201
    assert c.post("/api/stories", json={}).status_code == 201
    # Our pages send no referrer, so Chromium posts their forms with Origin: null; only
    # the browser's own Sec-Fetch-Site tells that apart from a sandboxed hostile page.
    own_form = c.post("/api/stories", json={}, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert own_form.status_code == 201
    assert c.get("/api/stories", headers={"Origin": "http://evil.example"}).status_code == 200  # reads: CORS stops them


def test_serving_config_refuses_a_network_address_without_users():
    hint = "batplots users add NAME --db x.sqlite3"
    with pytest.raises(SecurityError) as info:
        serving_config("0.0.0.0", (), None, False, 0, hint)
    assert hint in str(info.value) and "--no-auth" in str(info.value)
    with pytest.raises(SecurityError, match="--no-auth on 0.0.0.0 needs --allowed-host NAME"):
        serving_config("0.0.0.0", (), None, True, 0, hint)  # any Host with no login: DNS rebinding
    config, notes = serving_config("0.0.0.0", ("192.168.1.20",), None, True, 0, hint)
    assert not config.accounts and config.warning and any(n.startswith("WARNING: --no-auth") for n in notes)
    assert "192.168.1.20" in config.allowed_hosts
    config, notes = serving_config("0.0.0.0", ("Plots.Example.com",), KEY, False, 2, hint)
    assert config.accounts and config.api_key == KEY and "plots.example.com" in config.allowed_hosts
    config, _ = serving_config("192.168.1.9", (), None, False, 1, hint)
    assert "192.168.1.9" in config.allowed_hosts and not config.v1_open
    assert serving_config("0.0.0.0", (), None, False, 1, hint)[0].allowed_hosts is None  # any name, accounts guard
    config, _ = serving_config("127.0.0.1", ("localhost", "::1"), None, False, 0, hint)
    assert not config.accounts and config.v1_open
    # Loopback behind a reverse proxy that passes its public name: accounts, as on a network.
    with pytest.raises(SecurityError, match="127.0.0.1 for plots.example.com"):
        serving_config("127.0.0.1", ("plots.example.com",), None, False, 0, hint)
    config, _ = serving_config("127.0.0.1", ("plots.example.com",), KEY, False, 1, hint)
    assert config.accounts and "plots.example.com" in config.allowed_hosts and not config.v1_open
    for bad in ("http://x.com", "x.com:80", "a/b"):
        with pytest.raises(SecurityError, match="--allowed-host"):
            serving_config("127.0.0.1", (bad,), None, False, 0, hint)
    with pytest.raises(SecurityError, match="at least 16"):
        serving_config("127.0.0.1", (), "short", False, 0, hint)


# --- /v1 ------------------------------------------------------------------------------------
def test_v1_needs_the_key_when_one_is_set(make_server):
    srv = make_server(security=SecurityConfig(api_key=KEY))
    c = srv.client
    body = {"prompt": "Batman", "max_tokens": 3}
    for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key"}, {"Authorization": KEY},
                    {"Authorization": f"Basic {KEY}"}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/completions")):
            r = c.request(method, path, json=body if method == "POST" else None, headers=headers)
            assert r.status_code == 401, (headers, path)
            error = r.json()["error"]
            assert error["code"] == "invalid_api_key" and "Authorization: Bearer KEY" in error["message"]
    ok = c.post("/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"]
    assert srv.engine.started == 1
    assert c.get("/api/stories").status_code == 200  # the key guards /v1 only


def test_v1_is_off_on_a_network_address_without_a_key(make_server):
    srv = make_server(security=SecurityConfig(v1_open=False))
    r = srv.client.post("/v1/completions", json={"prompt": "Batman", "max_tokens": 3})
    assert r.status_code == 403 and "--api-key" in r.json()["error"]["message"]


def test_v1_errors_have_openai_shape(srv):
    c = srv.client
    cases = [(c.post("/v1/completions", json={"max_tokens": 3}), 400, "prompt is required"),
             (c.post("/v1/completions", json={"prompt": "x", "max_tokens": 0}), 400, "max_tokens must be from 1"),
             (c.post("/v1/completions", content=b"{nope", headers={"Content-Type": "application/json"}), 400,
              "not valid JSON"),
             (c.get("/v1/nothing-here"), 404, "Not Found"),
             (c.get("/v1/completions"), 405, "Method Not Allowed"),
             (c.post("/v1/completions", content=b"x" * 70_000), 413, "too large")]
    for r, status, fragment in cases:
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert fragment in error["message"] and error["type"] in ("invalid_request_error", "server_error")
        assert set(error) == {"message", "type", "param", "code"}
    assert c.get("/api/nothing-here").json() == {"detail": "Not Found"}  # the app keeps its own shape


def test_an_abandoned_non_streamed_completion_frees_its_slot(make_server):
    engine = FakeEngine(delay=0.05)  # 1,024 tokens would take ~50 s
    srv = make_server(engine=engine)
    bridge = srv.app.state.model.bridge
    assert bridge.pending() == 0
    left = threading.Event()

    def client_that_leaves():
        try:
            with httpx.Client(base_url=srv.url, timeout=httpx.Timeout(WAIT_S, read=1.0)) as c:
                c.post("/v1/completions", json={"prompt": "Batman", "max_tokens": 1024})
        except httpx.ReadTimeout:
            left.set()  # the client gives up and closes its connection

    thread = threading.Thread(target=client_that_leaves)
    thread.start()
    thread.join(WAIT_S)
    assert left.is_set()
    # Stopped by the cancel (engine.cancelled counts nothing else), however long that took
    # on this machine: the 1,024 tokens would have run on for ~50 s.
    wait_until(lambda: engine.cancelled == 1 and engine.active == 0 and bridge.pending() == 0,
               "the abandoned completion to stop")
    assert engine.started == 1
    # The freed slot serves the next client at once.
    r = srv.client.post("/v1/completions", json={"prompt": "Robin", "max_tokens": 3})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def test_the_official_openai_client_sends_the_key_as_the_app_expects(make_server):
    import openai

    srv = make_server(security=SecurityConfig(api_key=KEY))
    good = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0, timeout=WAIT_S)
    done = good.completions.create(model="fake-scripted", prompt="Batman", max_tokens=3)
    assert done.usage.completion_tokens == 3
    bad = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="not-the-key-at-all", max_retries=0, timeout=WAIT_S)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.completions.create(model="fake-scripted", prompt="Batman", max_tokens=3)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as info:  # the client reads our errors as OpenAI's
        good.completions.create(model="fake-scripted", prompt="Batman", max_tokens=0)
    assert "max_tokens must be from 1" in info.value.message and info.value.param == "max_tokens"
