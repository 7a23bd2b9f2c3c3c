"""The JSON API against the real app on a real uvicorn server (127.0.0.1), a temp
SQLite file and the scripted fake generator."""

import html
import threading

from markdown_it import MarkdownIt

from batplots.store import stories as storelib
from tests.fakegen import FakeEngine, fake_sentences
from tests.webserver import WAIT_S, assert_error, make_server, new_story, sse_events, srv, wait_until  # noqa: F401

# --- stories ------------------------------------------------------------------------------
def test_story_crud(srv):
    c = srv.client
    created = c.post("/api/stories", json={"title": "The Joker's Jest", "settings": {"sentences": 3}})
    assert created.status_code == 201
    story = created.json()
    assert set(story) >= {"id", "title", "version", "settings", "share_id", "created_at", "updated_at", "turns"}
    assert story["settings"] == {"sentences": 3, "temperature": 0.8, "top_p": 0.95, "copy_limit": 8}
    untitled = c.post("/api/stories").json()  # no body at all: every field is optional
    assert untitled["title"] == storelib.DEFAULT_TITLE
    assert {s["id"] for s in c.get("/api/stories").json()} == {story["id"], untitled["id"]}
    assert c.get(f"/api/stories/{story['id']}").json() == story
    patched = c.patch(f"/api/stories/{story['id']}", json={"version": 1, "title": "Pow", "settings": {"top_p": 0.5}})
    assert patched.status_code == 200
    assert patched.json()["title"] == "Pow" and patched.json()["version"] == 2
    assert patched.json()["settings"] == {"sentences": 3, "temperature": 0.8, "top_p": 0.5, "copy_limit": 8}
    # DELETE needs the version too: none, or a misspelt one, deletes nothing.
    assert_error(c.delete(f"/api/stories/{story['id']}"), 422, "version is required")
    assert_error(c.delete(f"/api/stories/{story['id']}?versoin=2"), 422, "version is required")
    assert c.delete(f"/api/stories/{story['id']}?version=2").status_code == 204
    assert_error(c.get(f"/api/stories/{story['id']}"), 404, "no story")
    assert [s["id"] for s in c.get("/api/stories").json()] == [untitled["id"]]


def test_unknown_ids_are_404_everywhere(srv):
    c = srv.client
    story = new_story(c)
    sid, v = story["id"], story["version"]
    bad = "0000000000000000"
    for method, path, body in [
        ("GET", f"/api/stories/{bad}", None), ("PATCH", f"/api/stories/{bad}", {"version": 1, "title": "x"}),
        ("DELETE", f"/api/stories/{bad}?version=1", None), ("POST", f"/api/stories/{bad}/turns", {"text": "x", "version": 1}),
        ("POST", f"/api/stories/{bad}/continue", {"version": 1}), ("POST", f"/api/stories/{bad}/retry", {"version": 1}),
        ("POST", f"/api/stories/{bad}/alternatives", {"version": 1}), ("POST", f"/api/stories/{bad}/undo", {"version": 1}),
        ("POST", f"/api/stories/{bad}/redo", {"version": 1}), ("GET", f"/api/stories/{bad}/export?format=md", None),
        ("PATCH", f"/api/stories/{sid}/turns/99999", {"text": "x", "version": v}),
    ]:
        r = c.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["detail"]
    page = c.get("/s/not-a-share-id")
    assert page.status_code == 404 and "No story is shared" in page.text


def test_version_conflicts_answer_409_with_the_current_version(srv):
    c = srv.client
    story = new_story(c)
    sid = story["id"]
    c.post(f"/api/stories/{sid}/continue", json={"version": story["version"]})  # now at version 3
    stale = 1
    for method, path, body in [
        ("PATCH", f"/api/stories/{sid}", {"version": stale, "title": "x"}),
        ("POST", f"/api/stories/{sid}/turns", {"text": "Robin!", "version": stale}),
        ("POST", f"/api/stories/{sid}/continue", {"version": stale}),
        ("POST", f"/api/stories/{sid}/retry", {"version": stale}),
        ("POST", f"/api/stories/{sid}/alternatives", {"version": stale}),
        ("POST", f"/api/stories/{sid}/undo", {"version": stale}),
        ("POST", f"/api/stories/{sid}/redo", {"version": stale}),
        ("PATCH", f"/api/stories/{sid}/turns/{story['turns'][0]['id']}", {"text": "x", "version": stale}),
        ("DELETE", f"/api/stories/{sid}?version={stale}", None),
    ]:
        r = c.request(method, path, json=body)
        body409 = assert_error(r, 409, "stale", "reload")
        assert body409["version"] == 3, (method, path)
    after = c.get(f"/api/stories/{sid}").json()
    assert after["version"] == 3 and len(after["turns"]) == 2  # nothing was overwritten


# --- bad input ----------------------------------------------------------------------------
def test_bad_text_is_refused_with_the_limit_named(srv, monkeypatch):
    c = srv.client
    story = new_story(c, text=None)
    sid = story["id"]
    for text in ["", "   ", "\n\t "]:
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": text, "version": 1}), 422, "empty")
    long = "x" * (storelib.MAX_TURN_CHARS + 1)
    assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": long, "version": 1}), 422, "2000")
    assert_error(c.post("/api/stories", json={"title": "t" * 121}), 422, str(storelib.MAX_TITLE_CHARS))
    assert_error(c.post("/api/stories", json={"title": "  "}), 422, "title is empty")
    assert_error(c.patch(f"/api/stories/{sid}", json={"version": 1}), 422, "nothing to change")
    ok = c.post(f"/api/stories/{sid}/turns", json={"text": "Batman waits.", "version": 1}).json()
    assert_error(c.patch(f"/api/stories/{sid}/turns/{ok['turns'][0]['id']}", json={"text": " ", "version": 2}),
                 422, "empty")
    monkeypatch.setattr(storelib, "MAX_TURNS", 2)
    full = c.post(f"/api/stories/{sid}/turns", json={"text": "Robin too.", "version": 2}).json()
    assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": "More.", "version": full["version"]}),
                 422, "the most a story may have (2)")
    assert_error(c.post(f"/api/stories/{sid}/continue", json={"version": full["version"]}), 422, "(2)")
    assert srv.engine.started == 0  # refused before any generation


def test_settings_out_of_range_are_refused_naming_the_range(srv):
    c = srv.client
    story = new_story(c)
    sid, v = story["id"], story["version"]
    cases = [({"sentences": 6}, "sentences must be from 1 to 5"), ({"sentences": 0}, "from 1 to 5"),
             ({"temperature": 2.5}, "temperature must be from 0.0 to 2.0"), ({"top_p": 0}, "top_p must be from 0.01"),
             ({"copy_limit": 2}, "copy_limit must be 0 (guard off) or a whole number from 4 to 64")]
    for settings, message in cases:
        body = assert_error(c.patch(f"/api/stories/{sid}", json={"version": v, "settings": settings}), 422, message)
        assert body["field"] == next(iter(settings))
        assert_error(c.post(f"/api/stories/{sid}/continue", json={"version": v, **settings}), 422, message)
        assert_error(c.post("/api/stories", json={"settings": settings}), 422, message)
    assert_error(c.post(f"/api/stories/{sid}/continue", json={"version": v, "seed": -1}), 422, "seed")
    assert_error(c.post(f"/api/stories/{sid}/alternatives", json={"version": v, "n": 0}), 422, "n must be from 1 to 5")
    assert_error(c.post(f"/api/stories/{sid}/alternatives", json={"version": v, "n": 6}), 422, "n must be from 1 to 5")
    assert_error(c.patch(f"/api/stories/{sid}", json={"version": v, "settings": {"top_k": 3}}), 422, "unknown field")
    assert c.get(f"/api/stories/{sid}").json()["version"] == v


def test_malformed_json_wrong_types_and_unknown_fields(srv):
    c = srv.client
    story = new_story(c)
    sid, v = story["id"], story["version"]
    url = f"/api/stories/{sid}/turns"
    headers = {"Content-Type": "application/json"}
    assert_error(c.post(url, content=b'{"text": "Robin', headers=headers), 422, "not valid JSON")
    assert_error(c.post(url, content=b"[1, 2]", headers=headers), 422, "must be a JSON object")
    assert_error(c.post(url, headers=headers), 422, "body is missing")
    assert_error(c.post(url, json={"text": 5, "version": v}), 422, "text: Input should be a valid string")
    assert_error(c.post(url, json={"text": "Hi.", "version": "1"}), 422, "version: Input should be a valid integer")
    assert_error(c.post(url, json={"text": "Hi.", "version": True}), 422, "version")
    assert_error(c.post(url, json={"text": "Hi."}), 422, "version is required")
    assert_error(c.post(url, json={"text": "Hi.", "version": v, "colour": "red"}), 422, "unknown field 'colour'")
    assert_error(c.post(url, json={"text": "Hi.", "version": v, "author": "joker"}), 422, "author")
    assert_error(c.post(url, json={"text": "Hi.", "version": v, "seed": 4}), 422, "seed is only for")
    assert_error(c.post(f"/api/stories/{sid}/continue", json={"version": v, "sentences": "2"}), 422, "sentences")
    assert_error(c.post(f"/api/stories/{sid}/continue", json={"version": v, "temperature": "hot"}), 422, "temperature")
    assert_error(c.patch(f"/api/stories/{sid}", json={"version": v, "title": 5}), 422, "title")
    assert_error(c.patch(f"/api/stories/{sid}/turns/abc", json={"text": "x", "version": v}), 422, "turn_id")
    assert_error(c.get(f"/api/stories/{sid}/export?format=pdf"), 422, "'md' or 'txt'")
    big = c.post(url, content=b'{"text": "' + b"x" * 70000 + b'", "version": 1}', headers=headers)
    assert big.status_code == 413 and "too large" in big.json()["detail"]
    assert c.get(f"/api/stories/{sid}").json()["version"] == v  # nothing changed, server still up


# --- generation ---------------------------------------------------------------------------
def test_continue_adds_a_model_turn_from_the_joined_story(srv):
    c = srv.client
    story = new_story(c, text="  Batman broods in the Batcave.  ")
    sid = story["id"]
    story = c.post(f"/api/stories/{sid}/turns", json={"text": "Robin polishes the Batmobile.",
                                                       "version": story["version"]}).json()
    r = c.post(f"/api/stories/{sid}/continue", json={"version": story["version"], "sentences": 3, "seed": 7})
    assert r.status_code == 200
    after = r.json()
    turn = after["turns"][-1]
    assert after["version"] == story["version"] + 1
    assert turn["author"] == "model" and len(fake_sentences(turn["text"])) == 3
    assert turn["text"] == turn["text"].strip()
    assert srv.engine.prompts[0] == "Batman broods in the Batcave. Robin polishes the Batmobile."
    assert turn["seed"] == 7 and turn["settings"]["sentences"] == 3 and turn["settings"]["seed"] == 7
    assert turn["meta"]["flags"] == [] and turn["meta"]["stop_reason"] == "sentences"
    # The same seed on the same story gives the same passage.
    twin = new_story(c, text="Batman broods in the Batcave.")
    twin = c.post(f"/api/stories/{twin['id']}/turns", json={"text": "Robin polishes the Batmobile.",
                                                             "version": twin["version"]}).json()
    twin_turn = c.post(f"/api/stories/{twin['id']}/continue",
                       json={"version": twin["version"], "sentences": 3, "seed": 7}).json()["turns"][-1]
    assert twin_turn["text"] == turn["text"]
    # The story's own settings apply when the request gives none.
    c.patch(f"/api/stories/{sid}", json={"version": after["version"], "settings": {"sentences": 1}})
    one = c.post(f"/api/stories/{sid}/continue", json={"version": after["version"] + 1}).json()["turns"][-1]
    assert len(fake_sentences(one["text"])) == 1


def test_continue_streams_server_sent_events(srv):
    c = srv.client
    story = new_story(c)
    with c.stream("POST", f"/api/stories/{story['id']}/continue", json={"version": story["version"]},
                  headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and kinds.count("piece") >= 10 and set(kinds) <= {"piece", "rewind", "done"}
    streamed = "".join(d["text"] for k, d in events if k == "piece")
    saved = events[-1][1]["story"]
    assert streamed.startswith(" ") and streamed.strip() == saved["turns"][-1]["text"]
    assert c.get(f"/api/stories/{story['id']}").json() == saved


def test_streaming_errors_before_the_stream_are_plain_json(srv):
    c = srv.client
    story = new_story(c)
    r = c.post(f"/api/stories/{story['id']}/continue", json={"version": 99}, headers={"Accept": "text/event-stream"})
    assert r.status_code == 409 and r.json()["version"] == story["version"]
    empty = c.post("/api/stories").json()
    assert_error(c.post(f"/api/stories/{empty['id']}/continue", json={"version": 1}), 422, "the story is empty")


def test_retry_replaces_the_last_model_turn(srv):
    c = srv.client
    story = new_story(c)
    sid = story["id"]
    assert_error(c.post(f"/api/stories/{sid}/retry", json={"version": story["version"]}), 422, "nothing to retry")
    first = c.post(f"/api/stories/{sid}/continue", json={"version": story["version"], "seed": 1}).json()
    asked = len(srv.engine.prompts)
    with c.stream("POST", f"/api/stories/{sid}/retry", json={"version": first["version"]},
                  headers={"Accept": "text/event-stream"}) as r:
        events = sse_events(r)
    retried = events[-1][1]["story"]
    assert len(retried["turns"]) == 2 and retried["turns"][0] == first["turns"][0]
    assert retried["turns"][1]["text"] != first["turns"][1]["text"]  # a fresh seed, a new sample
    assert retried["turns"][1]["seed"] != 1
    assert srv.engine.prompts[asked] == "Commissioner Gordon lifts the Bat-phone."  # without the replaced passage
    again = c.post(f"/api/stories/{sid}/retry", json={"version": retried["version"], "seed": 1}).json()
    assert again["turns"][1]["text"] == first["turns"][1]["text"]


def test_undo_redo_and_edit(srv):
    c = srv.client
    story = new_story(c)
    sid = story["id"]
    s = c.post(f"/api/stories/{sid}/continue", json={"version": story["version"]}).json()
    model_text = s["turns"][1]["text"]
    s = c.post(f"/api/stories/{sid}/undo", json={"version": s["version"]}).json()
    assert len(s["turns"]) == 1 and s["redo_count"] == 1
    s = c.post(f"/api/stories/{sid}/redo", json={"version": s["version"]}).json()
    assert s["turns"][1]["text"] == model_text and s["redo_count"] == 0
    assert_error(c.post(f"/api/stories/{sid}/redo", json={"version": s["version"]}), 422, "nothing to redo")
    s = c.patch(f"/api/stories/{sid}/turns/{s['turns'][0]['id']}",
                json={"text": "Chief O'Hara lifts the Bat-phone.", "version": s["version"]}).json()
    assert s["turns"][0]["text"] == "Chief O'Hara lifts the Bat-phone." and s["turns"][0]["edited"]
    c.post(f"/api/stories/{sid}/continue", json={"version": s["version"]})
    assert srv.engine.prompts[-1].startswith("Chief O'Hara lifts the Bat-phone. " + model_text)
    s = c.get(f"/api/stories/{sid}").json()
    for _ in range(3):
        s = c.post(f"/api/stories/{sid}/undo", json={"version": s["version"]}).json()
    assert_error(c.post(f"/api/stories/{sid}/undo", json={"version": s["version"]}), 422, "nothing to undo")


def test_alternatives_are_not_saved_until_picked(srv):
    c = srv.client
    story = new_story(c)
    sid = story["id"]
    r = c.post(f"/api/stories/{sid}/alternatives", json={"version": story["version"], "sentences": 1})
    assert r.status_code == 200
    body = r.json()
    cands = body["candidates"]
    assert body["version"] == story["version"] and len(cands) == 3
    assert len({cand["text"] for cand in cands}) == 3 and all(len(fake_sentences(x["text"])) == 1 for x in cands)
    assert c.get(f"/api/stories/{sid}").json() == story  # nothing saved
    five = c.post(f"/api/stories/{sid}/alternatives", json={"version": story["version"], "n": 5, "seed": 10}).json()
    # One batch of 5 ranked takes: the seeds the Writer derives from 10, best first.
    from batplots.story.take import take_seeds

    assert sorted(x["seed"] for x in five["candidates"]) == sorted(take_seeds(10, 5))
    assert five["candidates"][0]["chosen"] and five["why"].startswith("best of 5 takes")
    assert [x["score"] for x in five["candidates"]] == sorted((x["score"] for x in five["candidates"]), reverse=True)
    pick = cands[1]
    saved = c.post(f"/api/stories/{sid}/turns", json={"text": pick["text"], "author": "model", "seed": pick["seed"],
                                                       "version": story["version"]}).json()
    turn = saved["turns"][-1]
    assert turn["author"] == "model" and turn["text"] == pick["text"] and turn["seed"] == pick["seed"]


def test_model_that_writes_no_sentence_gets_a_clear_503(make_server):
    class Rambler(FakeEngine):
        def pieces(self, prompt, settings, seed, cancel, guidance=None):
            for _ in range(settings.max_new_tokens):
                yield " and"  # never ends a sentence: the token cap trims it all away

    srv = make_server(engine=Rambler())
    story = new_story(srv.client)
    assert_error(srv.client.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}),
                 503, "no complete sentence")
    with srv.client.stream("POST", f"/api/stories/{story['id']}/continue", json={"version": story["version"]},
                           headers={"Accept": "text/event-stream"}) as r:
        events = sse_events(r)
    assert events[-1][0] == "error" and "no complete sentence" in events[-1][1]["message"]
    assert srv.client.get(f"/api/stories/{story['id']}").json() == story


# --- export, share, pages -----------------------------------------------------------------
def test_export_and_share_mark_authorship_and_escape_html(srv):
    c = srv.client
    evil = 'Robin types <script>alert("pow")</script> & <img src=x onerror=alert(1)> *bold* [link](http://x).'
    story = new_story(c, title="<b>Bold</b> title", text=evil)
    story = c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}).json()
    model_text = story["turns"][1]["text"]
    md = c.get(f"/api/stories/{story['id']}/export?format=md")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert 'filename="b-bold-b-title.md"' in md.headers["content-disposition"]
    # Markdown is escaped for Markdown (a backslash), not HTML: a renderer shows the text as written.
    assert "\\<script\\>" in md.text and "&amp;" not in md.text
    rendered = MarkdownIt("commonmark").render(md.text)  # a real CommonMark renderer: no tag, the text as typed
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered
    assert html.escape(evil, quote=False) in rendered.replace("&quot;", '"')
    assert "\\*bold\\*" in md.text and "\\[link\\]" in md.text and "\\& " in md.text
    assert "**You:** Robin types" in md.text and f"**Model:** *{model_text}*" in md.text
    assert md.text.startswith("# \\<b\\>Bold\\</b\\> title")
    txt = c.get(f"/api/stories/{story['id']}/export?format=txt")
    assert txt.headers["content-type"].startswith("text/plain")
    assert f"[You] {evil}" in txt.text and f"[Model] {model_text}" in txt.text
    page = c.get(f"/s/{story['share_id']}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;alert(&quot;pow&quot;)&lt;/script&gt;" in page.text
    assert f'<div class="turn model"><span class="visually-hidden">Model: </span><p>{html.escape(model_text)}</p>' \
        in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_pages_docs_and_health(srv):
    c = srv.client
    index = c.get("/")
    assert index.status_code == 200 and 'id="next-text"' in index.text
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert c.get(asset).status_code == 200
    docs = c.get("/docs")
    assert docs.status_code == 200 and "/static-docs/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert c.get("/static-docs/swagger-ui-bundle.js").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    for path in ["/api/stories", "/api/stories/{story_id}", "/api/stories/{story_id}/turns",
                 "/api/stories/{story_id}/continue", "/api/stories/{story_id}/alternatives",
                 "/api/stories/{story_id}/retry", "/api/stories/{story_id}/undo", "/api/stories/{story_id}/redo",
                 "/api/stories/{story_id}/turns/{turn_id}", "/api/stories/{story_id}/export", "/s/{share_id}",
                 "/healthz"]:
        assert path in paths, path
    own = {"engine": "fake", "model": "fake-scripted"}
    assert c.get("/healthz").json() == {
        "status": "ready", "model": own, "load_seconds": 0.0, "copy_guard": None, "notice": None,
        # The models offered: here one that is not a named base, so no role and no choice.
        "models": [{"role": None, "name": "fake-scripted", "label": "fake-scripted", "status": "ready", "model": own,
                    "load_seconds": 0.0, "copy_guard": None, "notice": None, "default": True}]}


def test_while_the_model_loads_model_requests_get_503_and_stories_still_work(make_server):
    release = threading.Event()
    engine = FakeEngine()

    def slow_load():
        if not release.wait(WAIT_S):
            raise RuntimeError("test never released the loader")
        return engine

    srv = make_server(load_engine=slow_load)
    c = srv.client
    assert c.get("/healthz").json()["status"] == "loading"
    story = new_story(c)  # the story API does not need the model
    # A picked take as the last passage, so that Retry has one to replace (the story is read first).
    story = c.post(f"/api/stories/{story['id']}/turns",
                   json={"text": "Robin gasps.", "author": "model", "version": story["version"]}).json()
    for action in ("continue", "alternatives", "retry"):
        assert_error(c.post(f"/api/stories/{story['id']}/{action}", json={"version": story["version"]}),
                     503, "still loading")
    release.set()
    wait_until(lambda: c.get("/healthz").json()["status"] == "ready", "the model to load")
    assert c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}).status_code == 200


def test_a_model_that_fails_to_load_is_reported_and_the_server_stays_up(make_server):
    def broken():
        raise RuntimeError("no such adapter: /nowhere")

    srv = make_server(load_engine=broken)
    c = srv.client
    wait_until(lambda: c.get("/healthz").json()["status"] == "error", "the load to fail")
    assert c.get("/healthz").json()["error"] == "no such adapter: /nowhere"
    story = new_story(c)
    assert_error(c.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]}),
                 503, "failed to load: no such adapter")
