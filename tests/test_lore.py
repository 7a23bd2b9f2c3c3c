"""Lore (batplots.story.lore): the show's cast, villains, henchmen, places and gadgets from a corpus."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from batplots.model.weights import ADAPTERS_DIR
from batplots.story import lore as lorelib
from batplots.cli.lore import lore as lore_command
from batplots.corpus.episodes import Episode

ADAPTER = ADAPTERS_DIR / "batman66"
# Hand-written episodes (none from any corpus): two with the Riddler, one with the Penguin.
PLOTS = [
    "The Riddler and his henchmen, Quizzo and Puzzla, steal the crown from the Gotham City Museum and leave a riddle. "
    "Commissioner Gordon calls Batman on the Batphone. The Riddler hides another riddle in a crossword.",
    "At Wayne Manor, Alfred hands Bruce Wayne the riddle. The Prince of Puzzles escapes in his riddle van. "
    "The Dynamic Duo race off in the Batmobile and Batman throws his Batarang.",
    "The Penguin and his moll, Birdie Finch, sell exploding umbrellas at the Gotham City Bank. "
    "An umbrella fires gas at Robin, and the Penguin's umbrella floats away.",
]


def episodes(villains=None):
    return [Episode(title=f"t{i}", plot=p, villains=(villains or {}).get(i, [])) for i, p in enumerate(PLOTS)]


def test_villains_with_counts_episodes_henchmen_and_objects():
    lore = lorelib.build_lore(episodes())
    riddler = lore.villains["Riddler"]
    assert riddler["count"] == 3 and riddler["episodes"] == [1, 2]  # "Prince of Puzzles" is the Riddler
    assert riddler["henchmen"] == ["Puzzla", "Quizzo"]
    assert "riddle" in riddler["objects"]
    penguin = lore.villains["Penguin"]
    assert penguin["henchmen"] == ["Birdie Finch"] and penguin["objects"][0] == "umbrella"
    assert list(lore.villains)[:2] == ["Riddler", "Penguin"]  # most mentioned first
    assert "Joker" not in lore.villains


def test_cast_places_gadgets_and_beats():
    lore = lorelib.build_lore(episodes())
    assert lore.characters["Commissioner Gordon"] == {"count": 1, "episodes": [1],
                                                      "aliases": ["Commissioner Gordon", "Gordon"]}
    assert lore.characters["Bruce Wayne"]["count"] == 1  # "Wayne Manor" is no Bruce Wayne
    assert lore.places["Wayne Manor"]["episodes"] == [2]
    assert {"Gotham City Museum", "Gotham City Bank"} <= set(lore.places)
    assert lore.gadgets["Batmobile"]["count"] == 1 and "Batarang" in lore.gadgets and "Batphone" in lore.gadgets
    assert lore.beats["batphone"] == 1 and set(lore.beats) == {"crime", "batphone", "manor", "batmobile", "batcave",
                                                               "fight", "deathtrap", "escape", "capture"}


def test_a_scraped_corpus_credits_its_infobox_villains():
    lore = lorelib.build_lore(episodes({2: ["The Joker"], 0: ["Egghead"], 1: ["Doctor Pendulum"]}))
    assert lore.villains["Joker"] == {**lore.villains["Joker"], "count": 0, "episodes": [3]}
    assert lore.villains["Egghead"]["episodes"] == [1]
    assert lore.villains["Doctor Pendulum"]["episodes"] == [2]  # a villain of no seed list


def test_villains_in_orders_by_mentions_then_first_named():
    lore = lorelib.build_lore(episodes())
    text = "The Penguin meets the Riddler. The Riddler laughs; the Prince of Puzzles always laughs."
    assert lorelib.villains_in(text, lore) == ["Riddler", "Penguin"]
    assert lorelib.villains_in("The Penguin and the Riddler.", lore) == ["Penguin", "Riddler"]
    assert lorelib.villains_in("Nobody here.", lore) == []
    assert "Wayne Manor" in lore.places and {"Batmobile", "Batarang"} <= set(lore.gadgets)
    assert lorelib.characters_in("Gordon and Alfred", lore) == ["Commissioner Gordon", "Alfred"]


def test_write_and_load_round_trip_names_and_counts_only(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"title": "t", "plot": p}) + "\n" for p in PLOTS), encoding="utf-8")
    path = lorelib.write_lore(corpus, tmp_path / "adapter")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == ["corpus_sha256", "names", "cast", "villains", "places", "gadgets", "beats"]
    assert data["names"]["Riddler"] == 2 and data["names"]["Batman"] == 2
    loaded = lorelib.load_lore(tmp_path / "adapter")
    assert loaded.villains["Riddler"]["henchmen"] == ["Puzzla", "Quizzo"] and loaded.counts == data["names"]
    assert "steal the crown" not in path.read_text(encoding="utf-8")  # no plot text


def test_load_lore_reads_the_old_format_and_tolerates_junk(tmp_path):
    (tmp_path / "lore.json").write_text(json.dumps({"corpus_sha256": "x", "names": {"Batman": 9, "Pendulum": 1}}))
    old = lorelib.load_lore(tmp_path)
    assert old.counts == {"Batman": 9, "Pendulum": 1} and old.cast == {"Batman"} and old.villains == {}
    (tmp_path / "lore.json").write_text(json.dumps({"names": {"Batman": 1}, "villains": [1], "beats": {"a": "x"}}))
    assert lorelib.load_lore(tmp_path).villains == {} and lorelib.load_lore(tmp_path).beats == {}
    (tmp_path / "lore.json").write_text("{not json")
    assert lorelib.load_lore(tmp_path) == lorelib.Lore() and lorelib.load_lore(None) == lorelib.Lore()


def test_lore_from_text_keeps_the_writers_api():
    lore = lorelib.lore_from_text("Batman runs. " * 6 + "The Pendulum waits.")
    assert lore.counts == {"Batman": 6, "Pendulum": 1} and lore.cast == {"Batman"}
    assert lore.vocabulary == {"Batman", "Pendulum"} and lorelib.CAST_MIN_COUNT == 5


def test_the_shipped_lore_lists_the_big_villains_with_henchmen():
    lore = lorelib.load_lore(ADAPTER)
    for name in ("Riddler", "Joker", "Penguin"):
        assert lore.villains[name]["count"] >= 50 and lore.villains[name]["henchmen"], name
    assert {"Hawkeye", "Sparrow"} <= set(lore.villains["Penguin"]["henchmen"])
    assert "Mole Hill Mob" in lore.villains["Riddler"]["henchmen"]
    assert "umbrella" in lore.villains["Penguin"]["objects"] and "riddle" in lore.villains["Riddler"]["objects"]
    assert lore.counts["Batman"] > 200 and "Batmobile" in lore.gadgets and "Batcave" in lore.places
    assert lore.characters["Alfred"]["count"] > 20 and sum(lore.beats.values()) > 250


def test_the_shared_corpus_counts_and_episodes(shared_corpus):
    from batplots.corpus.episodes import corpus_sha256, read_corpus

    eps = read_corpus(shared_corpus)
    lore = lorelib.build_lore(eps)
    assert len(eps) == 43
    assert lore.villains["Joker"]["episodes"] == [5, 6, 15, 22, 23, 36, 37]
    assert lore.villains["Mr. Freeze"]["episodes"] == [7, 8, 38, 39]
    assert lore.characters["Batman"]["count"] >= lore.counts["Batman"] and len(lore.characters["Batman"]["episodes"]) == 43
    for section in (lore.villains, lore.characters, lore.places, lore.gadgets):
        for name, entry in section.items():
            assert entry["count"] >= 0 and all(1 <= e <= len(eps) for e in entry["episodes"]), name
            assert entry["episodes"] == sorted(set(entry["episodes"]))
    shipped = json.loads((ADAPTER / "lore.json").read_text(encoding="utf-8"))
    assert shipped["corpus_sha256"] == corpus_sha256(shared_corpus)
    assert shipped["villains"] == lore.villains and shipped["beats"] == lore.beats  # the shipped file is current


def test_cli_prints_a_summary_writes_json_and_fails_cleanly(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(PLOTS) + "\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(lore_command, ["--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    assert "Riddler" in result.output and "Puzzla, Quizzo" in result.output and "beats (sentences)" in result.output
    result = runner.invoke(lore_command, ["--corpus", str(corpus), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0 and (tmp_path / "a" / "lore.json").is_file() and "wrote" in result.output
    result = runner.invoke(lore_command, ["--corpus", str(corpus), "--json"])
    assert json.loads(result.output)["villains"]["Penguin"]["henchmen"] == ["Birdie Finch"]
    result = runner.invoke(lore_command, ["--corpus", str(tmp_path / "missing.txt")])
    assert result.exit_code != 0 and "does not exist" in result.output
    assert lore_command.help.startswith("Build the show's lore")
