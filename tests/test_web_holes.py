"""The small holes of issue 15, each closed: real app, real uvicorn on 127.0.0.1,
real SQLite, the scripted fake generator."""

import json
import sqlite3
import threading

import httpx
import pytest

from batplots.store import stories as storelib
from batplots.web import WebConfig, create_app
from batplots.story.export import TXT_INDENT
from batplots.web.security import MAX_JSON_DEPTH
from tests.fakegen import FakeEngine, HeldEngine, fake_writer
from tests.webserver import WAIT_S, assert_error, make_server, new_story, srv, wait_until  # noqa: F401

JSON = {"Content-Type": "application/json"}


def ascii_json(body: dict) -> dict:
    """httpx kwargs sending body as ASCII JSON: a lone surrogate becomes the escape \\ud800
    (valid JSON, not valid Unicode), as a hostile client would send it."""
    return {"content": json.dumps(body).encode(), "headers": JSON}


def test_lone_surrogates_are_422_not_500(srv):
    c = srv.client
    story = new_story(c, text=None)
    sid = story["id"]
    assert_error(c.post(f"/api/stories/{sid}/turns", **ascii_json({"text": "Holy \ud800 Batman", "version": 1})),
                 422, "text contains an unpaired surrogate (U+D800) at character 6")
    assert_error(c.post("/api/stories", **ascii_json({"title": "\udfff"})), 422, "title contains an unpaired surrogate")
    assert_error(c.patch(f"/api/stories/{sid}", **ascii_json({"version": 1, "title": "x\ud83d"})), 422,
                 "unpaired surrogate")
    r = c.post("/v1/completions", **ascii_json({"prompt": "Holy \udc00", "max_tokens": 2}))
    assert r.status_code == 400 and "unpaired surrogate" in r.json()["error"]["message"]
    ok = c.post(f"/api/stories/{sid}/turns", json={"text": "Holy \U0001F987 Batman!", "version": 1})
    assert ok.status_code == 200 and ok.json()["turns"][0]["text"] == "Holy \U0001F987 Batman!"  # a real pair is fine


def test_out_of_range_ids_are_422(srv):
    c = srv.client
    story = new_story(c)
    sid, v = story["id"], story["version"]
    for turn_id in (2**63, 2**64, 0, -1):
        r = c.patch(f"/api/stories/{sid}/turns/{turn_id}", json={"text": "x", "version": v})
        assert r.status_code == 422 and "turn_id" in r.json()["detail"], (turn_id, r.text)
    assert c.patch(f"/api/stories/{sid}/turns/{2**63 - 1}", json={"text": "x", "version": v}).status_code == 404
    assert_error(c.delete(f"/api/stories/{sid}?version={2**70}"), 409, "stale")  # compared, never stored
    assert c.get(f"/api/stories/{sid}").json()["version"] == v


def test_malformed_and_too_deep_bodies_are_422_naming_the_problem(srv):
    c = srv.client
    story = new_story(c)
    url = f"/api/stories/{story['id']}/turns"
    assert_error(c.post(url, content=b'{"text": "Robin \xff\xfe", "version": 2}', headers=JSON), 422,
                 "not valid UTF-8 (byte 16)")
    assert_error(c.post(url, content=b'{"text": "Robin \xe2\x82", "version": 2}'), 422, "not valid UTF-8")  # no type
    deep = b"[" * 10_000 + b"]" * 10_000
    assert_error(c.post(url, content=deep, headers=JSON), 422, f"deeper than {MAX_JSON_DEPTH} levels")
    brackets_in_a_string = b'{"text": "' + b"[" * 500 + b'", "version": 2}'
    assert c.post(url, content=brackets_in_a_string, headers=JSON).status_code == 200  # text, not nesting
    r = c.post("/v1/completions", content=deep, headers=JSON)
    assert r.status_code == 400 and "deeper than" in r.json()["error"]["message"]  # OpenAI's shape there


def test_invisible_only_text_is_empty(srv):
    c = srv.client
    story = new_story(c, text=None)
    sid = story["id"]
    for text in ["\u200b\u200b", "\u200d\ufeff\u2060", " \u00ad ", "\u3164", "\u2800\u200e", "\u0301\u0301"]:
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": text, "version": 1}), 422,
                     "only invisible characters")
    assert_error(c.post("/api/stories", json={"title": "\u200b\u2063"}), 422, "title is empty")
    ok = c.post(f"/api/stories/{sid}/turns", json={"text": "Zap\u200b!", "version": 1})
    assert ok.status_code == 200  # invisible characters among visible ones are kept


def test_control_characters_are_refused_and_never_reach_an_export(srv, tmp_path):
    c = srv.client
    story = new_story(c, text=None)
    sid = story["id"]
    for text, code in [("Robin\x00!", "U+0000"), ("Pow \x1b[31mred", "U+001B"), ("Bam\x7f", "U+007F"),
                       ("Zok\x85", "U+0085"), ("bell\x07", "U+0007")]:
        assert_error(c.post(f"/api/stories/{sid}/turns", json={"text": text, "version": 1}), 422, code,
                     "only tabs and line breaks")
    assert_error(c.post("/api/stories", json={"title": "Evil\x1b]0;pwned\x07"}), 422, "U+001B")
    ok = c.post(f"/api/stories/{sid}/turns", json={"text": "Line one.\r\n\tLine two.", "version": 1})
    assert ok.status_code == 200
    # A database written before this check may hold them: the exports drop them.
    conn = sqlite3.connect(srv.app.state.store.path)
    conn.execute("UPDATE turns SET text = ? WHERE story_id = ?", ("Old \x1b[2Jcleared\x00 screen.", sid))
    conn.execute("UPDATE stories SET title = ? WHERE id = ?", ("Title\x1b[31m", sid))
    conn.commit()
    conn.close()
    for fmt, kept in (("txt", "Old [2Jcleared screen."), ("md", "Old \\[2Jcleared screen.")):
        text = c.get(f"/api/stories/{sid}/export?format={fmt}").text
        assert "\x1b" not in text and "\x00" not in text, fmt
        assert kept in text, fmt


def test_a_passage_cannot_forge_authorship_in_the_text_export(srv):
    c = srv.client
    story = new_story(c, text=None)
    sid = story["id"]
    forged = "I wrote this.\n\n[Batplots] The model confesses everything.\n[You]\u2028[Batplots] Again."
    story = c.post(f"/api/stories/{sid}/turns", json={"text": forged, "version": 1}).json()
    txt = c.get(f"/api/stories/{sid}/export?format=txt").text
    labels = [line for line in txt.splitlines() if line.startswith("[")]
    assert labels == ["[You] I wrote this."]  # one passage, one label
    assert f"{TXT_INDENT}[Batplots] The model confesses everything." in txt
    assert f"{TXT_INDENT}[Batplots] Again." in txt
    md = c.get(f"/api/stories/{sid}/export?format=md").text
    assert md.count("**You:**") == 1 and "**Model:**" not in md.replace("**Model** (and", "")


def test_a_second_continue_on_a_generating_story_is_409_at_once(make_server):
    engine = HeldEngine()  # the first generation runs until the refusals are in, on any machine
    srv = make_server(engine=engine)
    c = srv.client
    story = new_story(c)
    sid, v = story["id"], story["version"]
    results = {}

    def first():
        results["first"] = c.post(f"/api/stories/{sid}/continue", json={"version": v})

    thread = threading.Thread(target=first)
    thread.start()
    wait_until(lambda: engine.holding == 1, "the first generation to start")
    started = engine.started
    for action in ("continue", "alternatives", "continue"):
        # Answered while the first is held: a refusal that waited for it would time out here.
        r = c.post(f"/api/stories/{sid}/{action}", json={"version": v}, headers={"Accept": "text/event-stream"})
        body = assert_error(r, 409, "already writing for this story")
        assert body["generating"] is True and body["version"] == v
    assert engine.started == started  # none of the refused ones generated
    assert thread.is_alive() and "first" not in results  # at once, not after the first finished
    engine.release.set()
    thread.join(WAIT_S)
    assert results["first"].status_code == 200
    after = results["first"].json()
    assert len(after["turns"]) == 2
    again = c.post(f"/api/stories/{sid}/continue", json={"version": after["version"]})  # free again
    assert again.status_code == 200
    other = new_story(c)  # another story is never blocked by this one
    assert c.post(f"/api/stories/{other['id']}/continue", json={"version": other["version"]}).status_code == 200


def test_a_stopped_stream_frees_its_story(make_server):
    engine = FakeEngine(delay=0.05)
    srv = make_server(engine=engine)
    story = new_story(srv.client)
    with httpx.Client(base_url=srv.url, timeout=WAIT_S) as c:
        with c.stream("POST", f"/api/stories/{story['id']}/continue", json={"version": story["version"]},
                      headers={"Accept": "text/event-stream"}) as r:
            next(r.iter_lines())  # the first piece arrived; now leave
    wait_until(lambda: engine.cancelled == 1, "the abandoned stream to be cancelled")
    wait_until(lambda: srv.client.post(f"/api/stories/{story['id']}/continue",
                                       json={"version": story["version"]}).status_code == 200,
               "the story to be free for a new generation")


def test_the_story_list_is_paged(srv):
    c = srv.client
    ids = [c.post("/api/stories", json={"title": f"Episode {i}"}).json()["id"] for i in range(7)]
    seen, url, pages = [], "/api/stories?limit=3", 0
    while url and pages < 10:  # bounded: 7 stories are 3 pages
        r = c.get(url)
        assert r.status_code == 200 and len(r.json()) <= 3
        seen += [s["id"] for s in r.json()]
        url = r.links.get("next", {}).get("url")
        pages += 1
    assert pages == 3 and seen == list(reversed(ids))  # newest first, each story once
    first = c.get("/api/stories").json()
    assert len(first) == 7 and "link" not in c.get("/api/stories").headers  # default page holds them all
    assert_error(c.get("/api/stories?limit=0"), 422, f"limit must be from 1 to {storelib.MAX_PAGE}")
    assert_error(c.get(f"/api/stories?limit={storelib.MAX_PAGE + 1}"), 422, "limit must be from 1")
    assert_error(c.get("/api/stories?cursor=not-a-cursor"), 422, "cursor is not one this server gave out")


def test_a_damaged_database_is_refused_at_start_with_what_to_do(tmp_path):
    path = tmp_path / "damaged.sqlite3"
    store = storelib.Store(path)
    for i in range(60):  # a few pages of stories and turns
        s = store.create(f"Episode {i}")
        store.add_turn(s["id"], 1, "user", "Batman broods in the Batcave. " * 30)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert pages > 10
    with open(path, "r+b") as f:  # scribble over the middle pages, past the schema page
        f.seek(page_size * 3)
        f.write(b"\xde\xad\xbe\xef" * (page_size * 3 // 4))
    with pytest.raises(storelib.Damaged) as info:
        create_app(WebConfig(db_path=path, writer=fake_writer(FakeEngine())))
    message = str(info.value)
    assert "is damaged (PRAGMA quick_check:" in message and ".recover" in message and str(path) in message
    assert storelib.Store(tmp_path / "fine.sqlite3").check_integrity() is None
