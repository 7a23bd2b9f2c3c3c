"""The one bridge from the model's threads to the event loop: one limit on what waits,
whether it is a story generation or a /v1 completion, counted per owner."""

import asyncio
import threading

import pytest

from batplots.web.generation import Bridge, Busy
from tests.fakegen import FakeEngine
from tests.webserver import WAIT_S, assert_error, make_server, new_story, wait_until  # noqa: F401


def test_the_bridge_admits_up_to_its_limit_and_frees_a_place_when_a_job_ends():
    async def scenario():
        bridge = Bridge(limit=2)
        release = threading.Event()

        def work(emit, cancel):
            emit("piece", "Pow!")
            release.wait(WAIT_S)
            return "done"

        a = bridge.start("robin", work)
        b = bridge.start("batgirl", work)
        assert bridge.pending() == 2 and bridge.pending_of("robin") == 1
        with pytest.raises(Busy, match="at most 2 wait at once"):
            bridge.start("alfred", work)
        release.set()
        assert [e async for e in a.events()] == [("piece", "Pow!"), ("done", "done")]
        assert await b.result() == "done"
        for _ in range(100):  # the worker thread releases its place just after its last event
            if bridge.pending() == 0:
                break
            await asyncio.sleep(0.02)
        assert bridge.pending() == 0
        assert await bridge.start("alfred", lambda emit, cancel: 7).result() == 7

    asyncio.run(scenario())


def test_a_share_per_owner_keeps_places_for_the_others():
    async def scenario():
        bridge = Bridge(limit=4, per_owner=2)
        release = threading.Event()
        jobs = [bridge.start("joker", lambda emit, cancel: release.wait(WAIT_S)) for _ in range(2)]
        with pytest.raises(Busy, match="at most 2 each"):
            bridge.start("joker", lambda emit, cancel: None)
        other = bridge.start("penguin", lambda emit, cancel: "umbrella")
        assert await other.result() == "umbrella"
        release.set()
        for job in jobs:
            await job.result()

    asyncio.run(scenario())


def test_a_failing_job_reports_its_error_and_frees_its_place():
    async def scenario():
        bridge = Bridge(limit=1)

        def work(emit, cancel):
            raise RuntimeError("the Batcomputer overheated")

        with pytest.raises(RuntimeError, match="overheated"):
            await bridge.start(None, work).result()
        for _ in range(100):
            if bridge.pending() == 0:
                break
            await asyncio.sleep(0.02)
        assert bridge.pending() == 0

    asyncio.run(scenario())


def test_stories_and_v1_completions_share_one_limit(make_server):
    """One limit on what waits: a /v1 completion holding the only place makes a story's
    continue 503 busy, and the other way round."""
    srv = make_server(engine=FakeEngine(delay=0.05))
    bridge = srv.app.state.model.bridge
    bridge.limit = 1
    story = new_story(srv.client)
    with srv.client.stream("POST", "/v1/completions", json={"prompt": "Batman", "max_tokens": 200,
                                                             "stream": True}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")  # the completion holds the place
        assert_error(srv.client.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}),
                     503, "busy")
    wait_until(lambda: bridge.pending() == 0 and srv.engine.active == 0, "the completion to stop")
    with srv.client.stream("POST", f"/api/stories/{story['id']}/continue",
                           json={"version": story["version"], "sentences": 5},
                           headers={"Accept": "text/event-stream"}) as r:
        lines = r.iter_lines()
        assert next(lines) == "event: piece"  # the story holds the place
        busy = srv.client.post("/v1/completions", json={"prompt": "Robin", "max_tokens": 3})
        assert busy.status_code == 503 and "busy" in busy.json()["error"]["message"]
    wait_until(lambda: bridge.pending() == 0, "the generation to stop")
    assert srv.client.post("/v1/completions", json={"prompt": "Robin", "max_tokens": 3}).status_code == 200
