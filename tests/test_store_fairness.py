"""One user's story cannot slow or lock the others' (issue 23, first row).

The case file and the outline are worked out after a change commits, outside the write
lock; the case file's rules read at most MAX_CASE_NAMES distinct made-up names of a
story; SQLite's "database is locked" is a clear 503 ("busy, try again"), never a 500.
Store tests run on SQLite and PostgreSQL; the web ones over real HTTP on 127.0.0.1.
No test times anything: the figures are benchmarks/write_fairness.py's."""

import sqlite3
import threading

import httpx
import pytest

from batplots.story import casefile, caseread
from batplots.story import names as nameslib
from batplots.story import lore as lorelib
from batplots.story.lore import Lore
from batplots.store import db as storedb
from batplots.store import stories as storelib
from batplots.store.stories import Store, Unavailable
from tests.webserver import assert_error, make_server, new_story  # noqa: F401

ENGINES = ["sqlite", "postgresql"]


def crafted_passage(start: int, chars: int = 1990) -> str:
    """`Zaaaa robs Zbaaa robs ...`: a new made-up name every other word (the red team's story)."""
    words, k = [], start
    while len(" ".join(words)) < chars - 20:
        words += ["Z" + "".join(chr(97 + (k // 26 ** i) % 26) for i in range(4)), "robs"]
        k += 1
    return " ".join(words)[:chars]


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    target = str(tmp_path / "stories.sqlite3") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(target)
    yield s
    s.close()


def test_the_case_file_rules_see_a_bounded_number_of_made_up_names_and_keep_the_lores():
    lore = Lore(counts={"Joker": 50}, villains={"Joker": {"count": 50, "aliases": ["Joker", "The Joker"]}})
    passage = crafted_passage(0) + " The Joker robs the Gotham Bank. Batman frowns."
    assert len(nameslib.names(passage)) > 4 * caseread.MAX_PASSAGE_NAMES
    seen = caseread.case_text(passage, lore)
    assert len(seen) == len(passage)  # same offsets: only first letters change
    own = nameslib.names(seen) - caseread.lore_name_words(lore)
    assert len(own) == caseread.MAX_PASSAGE_NAMES
    assert {"Joker", "Batman", "Gotham"} <= nameslib.names(seen)  # the lore and the heroes always count
    assert lorelib.villains_in(seen, lore) == ["Joker"]
    # A story of such passages: the lore's villain leads, and the villains are looked for
    # among the first MAX_CASE_NAMES made-up names only.
    story = ["The Joker robs the Gotham Bank."] + [crafted_passage(i * 200) for i in range(6)]
    case = storelib.refill_case(casefile.empty(), story, lore)
    assert case["villains"][0] == "Joker" and len(case["villains"]) == casefile.MAX_ENTRIES
    assert casefile._first_names(["A", "B", "A", "C", "D", "B"], 2) == ["A", "B", "A", "B"]
    # An honest story (fewer names than the cap) reads exactly as before.
    honest = "Professor Nobody plans to steal the golden egg. His henchmen Sniffy and Lefty hide out at the old mill."
    assert caseread.case_text(honest, lore) == honest
    assert storelib.refill_case({}, [honest], lore) == casefile.autofill({}, honest, lore)
    assert casefile.extract(honest, lore)["henchmen"] == ["Sniffy", "Lefty"]


def test_an_edit_reads_only_the_changed_passage_again_and_gives_what_reading_it_all_would():
    """Each sentence is read once per process (caseread's memos): after an edit only the
    new passage's sentences are new, and the case file is the one a fresh reading gives
    (checked against a reading with the memos emptied)."""
    lore = Lore(counts={"Joker": 50}, villains={"Joker": {"count": 50, "aliases": ["Joker", "The Joker"]}})
    story = ["Late at night the Glassblower and his henchman Shard tiptoe into the Gotham Planetarium.",
             "The villainous Glassblower plans to steal the Star of Gotham.",
             "Batman and Robin are tied to a giant vat of molten glass", "while Shard laughs.",
             "Meanwhile the Joker robs the Gotham Bank. Commissioner Gordon lifts the Batphone."]
    before = casefile.extract(story, lore)
    read = []
    real_read = caseread._read
    caseread._read = lambda sentence: read.append(sentence) or real_read(sentence)
    try:
        edited = story[:1] + ["The villainous Glassblower plans to steal the Moonstone."] + story[2:]
        after = casefile.extract(edited, lore)
    finally:
        caseread._read = real_read
    assert read == ["The villainous Glassblower plans to steal the Moonstone."]
    assert before["target"][0] == "Star of Gotham" and after["target"][0] == "Moonstone"
    for memo in (caseread._SENTENCES, caseread._FACTS, caseread._PASSAGES):
        memo._young.clear()
        memo._old.clear()
    assert casefile.extract(edited, lore) == after
    # The unfinished third passage reads on into the fourth, as in the joined text.
    assert caseread.story_sentences(story)[2] == "Batman and Robin are tied to a giant vat of molten glass while Shard laughs."
    assert casefile.extract(" ".join(edited), lore) == after


def test_the_memo_keeps_a_bounded_number_of_characters():
    memo = caseread.Memo(chars=100)
    made = []
    for i in range(50):
        text = f"sentence {i:02d} ..."  # 15 characters
        assert memo.get(text, text, lambda t=text: made.append(t) or t.upper()) == text.upper()
    assert len(made) == 50 and len(memo) <= 100 // 15 + 1
    assert memo.get("sentence 49 ...", "sentence 49 ...", lambda: "again") == "SENTENCE 49 ..."  # kept: recent


def test_a_crafted_story_still_gets_a_case_file_and_its_writes_commit_before_it_is_filled(store, monkeypatch):
    other = store.for_owner(None).create("another writer's story")
    mine = store.create("crafted")
    seen_during_fill = []
    fill = storelib.refill_case

    def watching_fill(case, text, lore=None):
        # Runs after COMMIT: the passage is visible to everyone, and another writer can
        # write meanwhile (on SQLite this would wait out the busy timeout if the lock were held).
        monkeypatch.setattr(storelib, "refill_case", fill)
        monkeypatch.setattr(storedb, "SQLITE_TIMEOUT_S", 0.2)
        seen_during_fill.append(len(store.get(mine["id"])["turns"]))
        fresh = store.get(other["id"])
        store.add_turn(other["id"], fresh["version"], "user", "Commissioner Gordon lifts the Bat-phone.")
        monkeypatch.setattr(storedb, "SQLITE_TIMEOUT_S", 5)
        return fill(case, text, lore)

    v = mine["version"]
    for i in range(3):
        if i == 2:
            monkeypatch.setattr(storelib, "refill_case", watching_fill)
        story = store.add_turn(mine["id"], v, "user", crafted_passage(i * 200))
        v = story["version"]
    assert seen_during_fill == [3]
    assert story["case_file"] == storelib.refill_case(casefile.empty(), storelib.passages(story["turns"]))
    assert story["case_file"]["villains"]
    assert store.get(mine["id"])["case_file"] == story["case_file"]  # stored at its version
    assert len(store.get(other["id"])["turns"]) == 1


def test_a_case_file_worked_out_for_an_old_version_is_not_stored_over_a_newer_one(store, monkeypatch):
    story = store.create("race")
    story = store.add_turn(story["id"], story["version"], "user", "Professor Nobody plans to steal the golden egg.")
    fill = storelib.refill_case
    newer = []

    def slow_fill(case, text, lore=None):
        monkeypatch.setattr(storelib, "refill_case", fill)
        if not newer:  # a second change lands while the first one's case file is worked out
            cur = store.get(story["id"])
            newer.append(store.set_case(story["id"], cur["version"], {"villains": ["The Sphinx"]}))
        return fill(case, text, lore)

    monkeypatch.setattr(storelib, "refill_case", slow_fill)
    store.edit_turn(story["id"], story["version"], story["turns"][0]["id"], "Egghead plans to steal the golden egg.")
    final = store.get(story["id"])
    assert final["case_file"]["villains"] == ["The Sphinx"] and final["version"] == newer[0]["version"]


def test_a_locked_sqlite_database_is_unavailable_after_a_bounded_wait(tmp_path, monkeypatch):
    path = tmp_path / "stories.sqlite3"
    store = Store(path)
    story = store.create("locked")
    monkeypatch.setattr(storedb, "SQLITE_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(Unavailable, match="busy.*try again"):
            store.add_turn(story["id"], story["version"], "user", "Robin gasps.")
        with pytest.raises(Unavailable, match="busy"):
            store.create("another")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.add_turn(story["id"], story["version"], "user", "Robin gasps.")["version"] == story["version"] + 1


def test_database_is_locked_reaches_the_user_as_503_not_500(make_server, monkeypatch):  # noqa: F811
    srv = make_server()
    c = srv.client
    story = new_story(c)
    monkeypatch.setattr(storedb, "SQLITE_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(srv.app.state.store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # readers wait too
    try:
        assert_error(c.post(f"/api/stories/{story['id']}/turns", json={"version": story["version"], "text": "Pow."}),
                     503, "busy", "try again")
        assert_error(c.post("/api/stories", json={}), 503, "busy")
        assert c.get(f"/api/stories/{story['id']}").status_code == 200  # WAL: readers never wait on the writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert c.get(f"/api/stories/{story['id']}").status_code == 200


def test_another_users_writes_go_through_while_a_crafted_story_is_written(make_server):  # noqa: F811
    srv = make_server()
    url = srv.url
    crafted = new_story(srv.client, text=crafted_passage(0))
    honest = new_story(srv.client, text="Commissioner Gordon lifts the Bat-phone.")
    statuses, errors = [], []

    def attacker():
        v = crafted["version"]
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(1, 13):  # bounded: 12 more crafted passages
                r = c.post(f"/api/stories/{crafted['id']}/turns", json={"version": v, "text": crafted_passage(i * 200)})
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                v = r.json()["version"]

    t = threading.Thread(target=attacker)
    t.start()
    try:
        v = honest["version"]
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(20):
                r = c.post(f"/api/stories/{honest['id']}/turns", json={"version": v, "text": f"Robin gasps, {i} times."})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    v = r.json()["version"]
    finally:
        t.join(120)
    assert statuses == [200] * 20 and not errors
    final = srv.client.get(f"/api/stories/{crafted['id']}").json()
    assert final["version"] == crafted["version"] + 12 and final["case_file"]["villains"]  # made-up robbers


def test_the_stores_outline_is_the_case_files_with_each_sentence_labelled_once():
    import json
    from pathlib import Path

    data = json.loads((Path(storelib.__file__).parents[1] / "data" / "stories.json").read_text())
    texts = ["", "   ", "Batman and Robin slide down the Batpoles", crafted_passage(0)]
    texts += [storelib.story_text([{"text": t} for t in story["turns"]]) for story in data["stories"]]
    texts.append("\n\n".join(texts[4:]) + " Meanwhile, at the Batcave")  # long, with an unfinished tail
    from batplots.story import beats

    for text in texts:
        story = storelib._with_outline({"turns": [{"text": text}]})
        assert [b["beat"] for b in story["outline"]] == beats.outline(text), text[:60]
    for story in data["stories"]:  # split into passages, the outline is the joined text's
        turns = [{"text": t} for t in story["turns"]]
        assert [b["beat"] for b in storelib._with_outline({"turns": turns})["outline"]] == beats.outline(
            storelib.story_text(turns))
    assert beats._label.cache_info().hits > 0  # the long text's sentences were labelled before


def test_a_generations_case_file_goes_through_the_name_cap_too(make_server, monkeypatch):  # noqa: F811
    srv = make_server()
    story = new_story(srv.client, text=crafted_passage(0))
    seen = []
    fill = storelib.refill_case

    def spy(case, text, lore=None):
        seen.append(text)
        return fill(case, text, lore)

    monkeypatch.setattr(storelib, "refill_case", spy)
    r = srv.client.post(f"/api/stories/{story['id']}/continue", json={"version": story["version"]})
    assert r.status_code == 200, r.text
    assert seen and seen[0] == [crafted_passage(0)]  # the Writer's guidance, read per passage (capped in names)
