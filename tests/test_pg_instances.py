"""Two app instances (separate processes, real HTTP on 127.0.0.1) sharing one real
PostgreSQL server: concurrent writers never both win, nothing acknowledged is lost
or doubled, and an instance killed mid-generation leaves the story as it was."""

import threading
import time

import httpx
import pytest

from batplots.store.stories import Store
from tests.appinstance import AppInstance
from tests.webserver import WAIT_S, new_story

STORIES = 4
WRITERS_PER_INSTANCE = 6
ROUNDS = 8  # attempts per writer
DEADLINE_S = 60  # the whole race, however slow the machine


@pytest.fixture(scope="module")
def shared(pg_server):
    """(database URL, [instance a, instance b]): both up, stopped at the end."""
    url = pg_server.create_database("instances")
    instances = [AppInstance(url, delay=0.05), AppInstance(url, delay=0.05)]
    try:
        for instance in instances:
            instance.wait_up()
        yield url, instances
    finally:
        for instance in instances:
            instance.stop()


def test_concurrent_writers_on_two_instances_lose_nothing_and_stale_writes_get_409(shared):
    url, instances = shared
    with httpx.Client(base_url=instances[0].url, timeout=WAIT_S) as c:
        story_ids = [c.post("/api/stories", json={"title": f"Race {i}"}).json()["id"] for i in range(STORIES)]
    outcomes = []  # (story, text, version sent, status, version in a 409)
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE_S

    def writer(n: int, base_url: str):
        with httpx.Client(base_url=base_url, timeout=WAIT_S) as client:
            for round_ in range(ROUNDS):
                if time.monotonic() > deadline:
                    return
                sid = story_ids[(n + round_) % STORIES]
                version = client.get(f"/api/stories/{sid}").json()["version"]
                text = f"Writer {n} round {round_} was here."
                r = client.post(f"/api/stories/{sid}/turns", json={"text": text, "version": version})
                with lock:
                    outcomes.append((sid, text, version, r.status_code,
                                     r.json().get("version") if r.status_code == 409 else None))

    threads = [threading.Thread(target=writer, args=(n, instances[n % 2].url))
               for n in range(2 * WRITERS_PER_INSTANCE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 2 * WRITERS_PER_INSTANCE * ROUNDS, "every request answered, in time"
    assert {status for *_, status, _ in outcomes} <= {200, 409}
    acked = [o for o in outcomes if o[3] == 200]
    stale = [o for o in outcomes if o[3] == 409]
    assert acked and stale  # the race really raced

    store = Store(url)  # the checker reads the database directly
    try:
        for sid in story_ids:
            story = store.get(sid)
            texts = [t["text"] for t in story["turns"]]
            mine = sorted(acked_ for acked_ in acked if acked_[0] == sid)
            # Every acknowledged change is there exactly once, and nothing else is.
            assert sorted(texts) == sorted(o[1] for o in mine)
            assert len(set(texts)) == len(texts)
            # One winner per version: the winners' versions are exactly 1, 2, ..., in turn order.
            by_version = sorted(mine, key=lambda o: o[2])
            assert [o[2] for o in by_version] == list(range(1, story["version"]))
            assert [o[1] for o in by_version] == texts
            # Every refused write was stale: another writer had already won its version.
            for o in stale:
                if o[0] == sid:
                    assert o[2] in {w[2] for w in mine} and o[4] > o[2]
                    assert o[1] not in texts
    finally:
        store.close()


def test_an_instance_killed_mid_generation_leaves_the_story_as_it_was(shared):
    url, (a, b) = shared
    with httpx.Client(base_url=a.url, timeout=WAIT_S) as ca, httpx.Client(base_url=b.url, timeout=WAIT_S) as cb:
        story = new_story(ca)
        with ca.stream("POST", f"/api/stories/{story['id']}/continue",
                       json={"version": story["version"], "sentences": 5},
                       headers={"Accept": "text/event-stream"}) as r:
            lines = r.iter_lines()
            assert next(lines) == "event: piece"  # instance a is writing the model's passage
            a.kill9()
        assert cb.get(f"/api/stories/{story['id']}").json() == story  # no half passage, no new version
        # Nothing is left locked: the other instance goes on from the same version.
        moved = cb.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]})
        assert moved.status_code == 200 and moved.json()["version"] == story["version"] + 1


def test_a_database_server_that_goes_away_is_a_503_saying_so():
    from batplots.web import WebConfig, create_app
    from tests.fakegen import FakeEngine, fake_writer
    from tests.pgserver import PgServer
    from tests.webserver import LiveServer

    with PgServer() as pg:
        app = create_app(WebConfig(db_path=pg.create_database(), writer=fake_writer(FakeEngine())))
        with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=WAIT_S) as c:
            story = new_story(c)
            pg.stop()
            r = c.get(f"/api/stories/{story['id']}")
            assert r.status_code == 503 and "PostgreSQL refused or is unreachable" in r.json()["detail"]


def test_the_api_maps_store_errors_the_same_on_postgresql(pg_server):
    """404, 409 and 422 (limits, bad text, out-of-range numbers) as on SQLite."""
    from batplots.store.stories import MAX_TURN_CHARS
    from batplots.web import WebConfig, create_app
    from tests.fakegen import FakeEngine, fake_writer
    from tests.webserver import LiveServer, assert_error

    app = create_app(WebConfig(db_path=pg_server.create_database("api"), writer=fake_writer(FakeEngine())))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=WAIT_S) as c:
        story = new_story(c)
        sid, version = story["id"], story["version"]
        assert_error(c.get("/api/stories/nope"), 404, "no story with id")
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": "Pow.", "version": version - 1}), 409,
                     "stale")
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": "x" * (MAX_TURN_CHARS + 1),
                                                               "version": version}), 422, str(MAX_TURN_CHARS))
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": "Bat\x00man.", "version": version}), 422,
                     "control character")
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": "Pow.", "version": version, "seed": 2 ** 70,
                                                               "author": "model"}), 422, "seed must be from")
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": "Pow.", "version": 2 ** 70}), 409, "stale")
        assert c.get("/s/abc%00def").status_code == 404
        assert c.get(f"/api/stories/{sid}").json() == story  # none of these changed it
