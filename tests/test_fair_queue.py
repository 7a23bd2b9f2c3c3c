"""A fair generation queue (issue 23): one owner's share of the places waiting for the
model is MAX_PENDING_PER_OWNER, so one user's many streams delay only that user. Without
accounts every request's owner is None, and the share is per client address. Real HTTP
on 127.0.0.1; uvicorn trusts X-Forwarded-For from 127.0.0.1, which stands in for two
machines on a --no-auth server."""

import asyncio
import threading

import httpx

from batplots.web import generation
from batplots.web.generation import Bridge
from batplots.web.security import SecurityConfig
from tests.fakegen import FakeEngine
from tests.webserver import WAIT_S, make_server, new_story, wait_until  # noqa: F401

STREAMS = 34  # the red team's count: more than the whole queue
# `serve --host 0.0.0.0 --no-auth --allowed-host 127.0.0.1`, with /v1 open: anyone, by address.
NO_AUTH = SecurityConfig(allowed_hosts=frozenset({"127.0.0.1", "localhost"}), accounts=False, v1_open=True,
                         local=False)


def test_the_anonymous_owner_is_counted_per_client_address():
    async def scenario():
        bridge = Bridge(limit=4, per_owner=2)
        release = threading.Event()
        jobs = []
        generation.CLIENT_ADDRESS.set("ip:192.0.2.1")
        jobs += [bridge.start(None, lambda emit, cancel: release.wait(WAIT_S)) for _ in range(2)]
        try:
            bridge.start(None, lambda emit, cancel: None)
            raise AssertionError("a third job of one address was admitted")
        except generation.Busy as exc:
            assert "at most 2 each" in str(exc)
        generation.CLIENT_ADDRESS.set("ip:192.0.2.2")
        assert bridge.pending_of(None) == 0
        assert await bridge.start(None, lambda emit, cancel: "mine").result() == "mine"
        release.set()
        for job in jobs:
            await job.result()

    asyncio.run(scenario())
    assert Bridge().per_owner == generation.MAX_PENDING_PER_OWNER < generation.MAX_PENDING_GENERATIONS


def test_one_users_34_open_streams_do_not_make_another_users_continue_503(make_server):  # noqa: F811
    srv = make_server(engine=FakeEngine(delay=0.05), security=NO_AUTH)
    bridge = srv.app.state.model.bridge
    story = new_story(srv.client)
    release = threading.Event()
    statuses: list[int] = []
    lock = threading.Lock()

    def stream():
        with httpx.Client(base_url=srv.url, timeout=WAIT_S) as c:
            with c.stream("POST", "/v1/completions", json={"prompt": "Batman", "max_tokens": 400, "stream": True},
                          headers={"X-Forwarded-For": "203.0.113.9"}) as r:
                with lock:
                    statuses.append(r.status_code)
                if r.status_code == 200:
                    release.wait(WAIT_S)  # hold the place, as an open stream does

    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(statuses) == STREAMS, "every stream to be answered")
        assert statuses.count(200) == generation.MAX_PENDING_PER_OWNER
        assert statuses.count(503) == STREAMS - generation.MAX_PENDING_PER_OWNER
        with httpx.Client(base_url=srv.url, timeout=WAIT_S) as other:
            with other.stream("POST", f"/api/stories/{story['id']}/continue", json={"version": story["version"]},
                              headers={"Accept": "text/event-stream", "X-Forwarded-For": "198.51.100.4"}) as r:
                assert r.status_code == 200  # admitted: waits its turn for the model, not refused
            busy = other.post("/v1/completions", json={"prompt": "Robin", "max_tokens": 3},
                              headers={"X-Forwarded-For": "203.0.113.9"})
            share = f"at most {generation.MAX_PENDING_PER_OWNER} each"
            assert busy.status_code == 503 and share in busy.json()["error"]["message"]
    finally:
        release.set()
        for t in threads:
            t.join(WAIT_S)
    wait_until(lambda: bridge.pending() == 0, "every generation to stop")
