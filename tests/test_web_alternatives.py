"""Alternatives as the page uses them (issue 16): every take of one batch streams side
by side, a client that stops cancels them all and nothing is saved, and picking a
take saves the writer's typed passage and the take together. Real app, real uvicorn
on 127.0.0.1, the scripted FakeEngine."""

from batplots.store import stories as storelib
from tests.fakegen import FakeEngine, fake_sentences
from tests.webserver import assert_error, make_server, new_story, sse_events, srv, wait_until  # noqa: F401

SSE = {"Accept": "text/event-stream"}


def test_alternatives_stream_every_take_of_one_batch(srv):
    c = srv.client
    story = new_story(c)
    sid = story["id"]
    typed = "Robin spots the Riddler's calling card."
    with c.stream("POST", f"/api/stories/{sid}/alternatives", headers=SSE,
                  json={"version": story["version"], "n": 3, "sentences": 1, "seed": 7, "text": typed}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) <= {"piece", "rewind"}
    streamed = {}
    for kind, data in events[:-1]:
        streamed[data["take"]] = (streamed.get(data["take"], "") + data["text"]) if kind == "piece" else data["text"]
    assert sorted(streamed) == [0, 1, 2]  # all three takes were written at once, each streamed
    done = events[-1][1]
    assert done["version"] == story["version"] and "best of 3 takes" in done["why"]
    for cand in done["candidates"]:
        assert streamed[cand["take"]].strip() == cand["text"] and len(fake_sentences(cand["text"])) == 1
    # The typed passage was continued but not saved; nothing else was either.
    assert srv.engine.prompts[-1].rstrip().endswith(typed)
    assert c.get(f"/api/stories/{sid}").json() == story


def test_stopping_alternatives_cancels_every_take_and_saves_nothing(make_server):
    srv = make_server(engine=FakeEngine(delay=0.05))
    c = srv.client
    story = new_story(c)
    sid = story["id"]
    with c.stream("POST", f"/api/stories/{sid}/alternatives", headers=SSE,
                  json={"version": story["version"], "n": 3, "text": "Batman frowns."}) as r:
        for line in r.iter_lines():
            if line.startswith("event: piece"):
                break  # the page's Stop: the connection goes away mid-stream
    wait_until(lambda: srv.engine.cancelled == 3, "every take to be cancelled")
    assert c.get(f"/api/stories/{sid}").json() == story
    # The story is free again at once: a new generation is not refused as busy.
    assert c.post(f"/api/stories/{sid}/continue", json={"version": story["version"]}).status_code == 200


def test_picking_a_take_saves_the_typed_passage_and_the_take_together(srv):
    c = srv.client
    story = new_story(c)
    sid, v = story["id"], story["version"]
    typed = "Chief O'Hara hears a knock."
    cands = c.post(f"/api/stories/{sid}/alternatives", json={"version": v, "text": typed}).json()["candidates"]
    pick = cands[-1]
    saved = c.post(f"/api/stories/{sid}/turns", json={"text": pick["text"], "author": "model", "seed": pick["seed"],
                                                       "user_text": typed, "version": v}).json()
    assert [(t["author"], t["text"]) for t in saved["turns"][-2:]] == [("user", typed), ("model", pick["text"])]
    assert saved["turns"][-1]["seed"] == pick["seed"] and saved["version"] == v + 2
    # Bad input saves neither passage, and says what was wrong.
    v = saved["version"]
    for body, status, fragment in [
        ({"text": pick["text"], "author": "model", "user_text": "   ", "version": v}, 422, "user_text is empty"),
        ({"text": "  ", "author": "model", "user_text": typed, "version": v}, 422, "text is empty"),
        ({"text": pick["text"], "author": "model", "user_text": "x" * 2001, "version": v}, 422, "at most 2000"),
        ({"text": typed, "user_text": typed, "version": v}, 422, "seed is only for a picked alternative"),
        ({"text": pick["text"], "author": "model", "user_text": typed, "version": v - 1}, 409, "stale"),
    ]:
        assert_error(c.post(f"/api/stories/{sid}/turns", json=body), status, fragment)
    assert c.get(f"/api/stories/{sid}").json() == saved


def test_alternatives_refuse_bad_typed_text_by_name(srv):
    c = srv.client
    story = new_story(c)
    url = f"/api/stories/{story['id']}/alternatives"
    assert_error(c.post(url, json={"version": story["version"], "text": "x" * 2001}), 422, "at most 2000")
    assert_error(c.post(url, json={"version": story["version"], "text": " "}), 422, "text is empty")
    assert_error(c.post(url, json={"version": story["version"], "text": 5}), 422, "text")


def test_a_full_story_has_no_room_for_a_passage_and_a_take(srv, monkeypatch):
    c = srv.client
    story = new_story(c)  # one passage
    monkeypatch.setattr(storelib, "MAX_TURNS", 2)
    assert_error(c.post(f"/api/stories/{story['id']}/turns",
                        json={"text": "Pow.", "author": "model", "user_text": "Zap.", "version": story["version"]}),
                 422, "more than 2")
    assert c.get(f"/api/stories/{story['id']}").json() == story


class BadSeedEngine(FakeEngine):
    """Never ends a sentence for the seeds in `bad`: a take started with one has no sentence."""

    def __init__(self, bad=(), **kwargs):
        super().__init__(**kwargs)
        self.bad = set(bad)

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        if seed not in self.bad:
            yield from super().pieces(prompt, settings, seed, cancel, guidance)
            return
        for piece in super().pieces(prompt, settings, seed, cancel, guidance):
            yield piece.replace(".", "")


def test_a_failed_take_is_written_again_so_alternatives_keep_their_count(make_server):
    """Issue 24: 'three takes' were really two. A take with no complete sentence (or the same
    text as another) is written again in a batch of the missing ones, streamed under its own index."""
    from batplots.story.take import take_seeds

    seeds = take_seeds(11, 3)
    srv = make_server(engine=BadSeedEngine(bad={seeds[1]}))
    c = srv.client
    story = new_story(c)
    body = {"version": story["version"], "n": 3, "sentences": 1, "seed": 11}
    with c.stream("POST", f"/api/stories/{story['id']}/alternatives", headers=SSE, json=body) as r:
        events = sse_events(r)
    assert events[-1][0] == "done", events[-1]
    done = events[-1][1]
    assert sorted(cand["take"] for cand in done["candidates"]) == [0, 1, 2]
    assert len({cand["text"] for cand in done["candidates"]}) == 3
    refilled = [cand for cand in done["candidates"] if cand["refilled"]]
    assert [cand["take"] for cand in refilled] == [1] and not refilled[0]["chosen"]
    assert refilled[0]["seed"] not in seeds and len(fake_sentences(refilled[0]["text"])) == 1
    # Take 1 was streamed again from the start: its last streamed text is the kept one.
    streamed = ""
    for kind, data in events[:-1]:
        if data["take"] == 1:
            streamed = streamed + data["text"] if kind == "piece" else data["text"]
    assert streamed.strip() == refilled[0]["text"]
    # The plain JSON answer does the same; nothing is saved either way.
    plain = c.post(f"/api/stories/{story['id']}/alternatives", json=body).json()
    assert sorted(cand["take"] for cand in plain["candidates"]) == [0, 1, 2]
    assert c.get(f"/api/stories/{story['id']}").json() == story
