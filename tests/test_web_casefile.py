"""The case file and beats through the JSON API (real uvicorn on 127.0.0.1, FakeEngine)."""


from batplots.story import beats
from batplots.story import casefile
from batplots.story.writer import Writer
from tests.webserver import assert_error, make_server, new_story, srv  # noqa: F401

NOBODY = ("Professor Nobody plans to steal the golden egg. Professor Nobody and his henchmen Sniffy and Lefty "
          "hide out at the old mill.")


def test_the_story_carries_its_case_file_and_outline_and_the_writer_edits_it(srv):
    c = srv.client
    story = new_story(c, text=NOBODY)
    sid = story["id"]
    assert story["case_file"]["villains"] == ["Professor Nobody"] and story["case_file"]["edited"] == []
    assert story["case_file"]["hideout"] == ["old mill"] and isinstance(story["outline"], list)
    put = c.put(f"/api/stories/{sid}/case", json={"version": story["version"], "villains": ["The Sphinx"],
                                                   "hideout": ["old mill"]})
    assert put.status_code == 200, put.text
    mine = put.json()
    assert mine["version"] == story["version"] + 1 and mine["case_file"]["villains"] == ["The Sphinx"]
    assert mine["case_file"]["edited"] == ["villains"] and c.get(f"/api/stories/{sid}").json() == mine
    # A passage added later fills in the rest, never the writer's field.
    more = c.post(f"/api/stories/{sid}/turns", json={"version": mine["version"],
                                                     "text": "Batman and Robin are tied to a giant candle."}).json()
    assert more["case_file"]["deathtrap"] == ["tied to a giant candle"]
    assert more["case_file"]["villains"] == ["The Sphinx"]
    # Stale version: 409 with the current one, nothing changed.
    stale = assert_error(c.put(f"/api/stories/{sid}/case", json={"version": mine["version"], "villains": []}),
                         409, "stale")
    assert stale["version"] == more["version"]
    # Bad input names the field and what is allowed.
    v = more["version"]
    assert_error(c.put(f"/api/stories/{sid}/case", json={"version": v, "guests": [f"G{i}" for i in range(9)]}),
                 422, f"guests has 9 entries; a field may have at most {casefile.MAX_ENTRIES}")
    assert_error(c.put(f"/api/stories/{sid}/case", json={"version": v, "target": ["x" * 81]}),
                 422, "target:", f"at most {casefile.MAX_ENTRY_CHARS}")
    assert_error(c.put(f"/api/stories/{sid}/case", json={"version": v, "loot": ["gold"]}), 422, "unknown field 'loot'")
    assert_error(c.put(f"/api/stories/{sid}/case", json={"version": v, "villains": "Joker"}), 422, "villains")
    assert_error(c.put(f"/api/stories/{sid}/case", json={"version": v, "auto": ["lair"]}), 422, "no field 'lair'")
    assert c.get(f"/api/stories/{sid}").json()["version"] == v
    # auto hands a field back to autofill.
    back = c.put(f"/api/stories/{sid}/case", json={"version": v, "auto": ["villains"]}).json()
    assert back["case_file"]["villains"] == ["Professor Nobody"] and back["case_file"]["edited"] == []
    # The exports list the case file.
    md = c.get(f"/api/stories/{sid}/export?format=md").text
    assert "## Case file" in md and "- **Villains:** Professor Nobody" in md
    assert "    Hideout: old mill" in c.get(f"/api/stories/{sid}/export?format=txt").text


def test_a_beat_goes_to_the_writer_with_the_case_and_is_kept_in_the_turns_meta(srv, monkeypatch):
    asked = []
    stream = Writer.stream

    def spy(self, story, settings=None, cancel=None, takes=None, tagged=False, case=None, beat=None, whole=False,
            writer_text=None):
        asked.append((case, beat))
        written.append(writer_text)
        return stream(self, story, settings, cancel=cancel, takes=takes, tagged=tagged, case=case, beat=beat,
                      whole=whole, writer_text=writer_text)
    written = []
    monkeypatch.setattr(Writer, "stream", spy)
    c = srv.client
    story = new_story(c, text=NOBODY)
    sid = story["id"]
    done = c.post(f"/api/stories/{sid}/continue", json={"version": story["version"], "beat": "fight"})
    assert done.status_code == 200, done.text
    assert done.json()["turns"][-1]["meta"]["beat"] == "fight"
    assert asked[-1] == (story["case_file"], "fight")
    retried = c.post(f"/api/stories/{sid}/retry", json={"version": done.json()["version"], "beat": "escape"})
    assert retried.json()["turns"][-1]["meta"]["beat"] == "escape" and asked[-1][1] == "escape"
    plain = c.post(f"/api/stories/{sid}/continue", json={"version": retried.json()["version"]}).json()
    assert "beat" not in plain["turns"][-1]["meta"] and asked[-1][1] is None
    alts = c.post(f"/api/stories/{sid}/alternatives", json={"version": plain["version"], "beat": "batcave", "n": 2})
    assert alts.status_code == 200, alts.text
    assert asked[-1][1] == "batcave"
    # The Writer knows which passages are the writer's own (a model's name they have not
    # taken up must not lead): only the user's turns, and an unsaved typed passage.
    assert written[0] == NOBODY and all(w == NOBODY for w in written[:4])
    typed = c.post(f"/api/stories/{sid}/alternatives", json={"version": plain["version"], "n": 2,
                                                            "text": "Chief O'Hara phones Wayne Manor."})
    assert typed.status_code == 200, typed.text
    assert written[-1] == NOBODY + " Chief O'Hara phones Wayne Manor."
    for path in ("continue", "retry", "alternatives"):
        assert_error(c.post(f"/api/stories/{sid}/{path}", json={"version": plain["version"], "beat": "dance"}),
                     422, f"beat must be one of: {', '.join(beats.BEATS)}", "'dance'")
    assert c.get(f"/api/stories/{sid}").json()["version"] == plain["version"]
