"""The case file's rules (batplots.story.casefile) on hand-written sentences."""

import pytest

from batplots.story import casefile
from batplots.story.lore import Lore
from batplots.story.rules import Invalid

NOBODY = ("Professor Nobody plans to steal the Star of Gotham diamond from the Gotham Museum. "
          "Commissioner Gordon calls Batman on the Batphone. Professor Nobody and his henchmen Sniffy and Lefty "
          "hide out at the abandoned toy factory. Batman and Robin are tied to a giant candle.")


def test_a_story_of_the_writers_own_fills_every_field():
    case = casefile.autofill(casefile.empty(), NOBODY + " Mayor Linseed says the city is doomed.")
    assert case == {"villains": ["Professor Nobody"], "henchmen": ["Sniffy", "Lefty"], "guests": ["Mayor Linseed"],
                    "target": ["Star of Gotham diamond"], "hideout": ["abandoned toy factory"],
                    "deathtrap": ["tied to a giant candle"], "edited": []}


@pytest.mark.parametrize("text, field, expected", [
    ("The Bookworm's henchmen rob a bank.", "villains", ["Bookworm"]),
    ("The villainous Dr. Dread laughs.", "villains", ["Dr. Dread"]),
    ("Batman and Robin drive to the Gotham Museum.", "villains", []),  # heroes and places are no villains
    ("Commissioner Gordon lifts the Bat-phone.", "villains", []),
    ("Nobody's moll, Kitty Glitter, distracts Robin.", "henchmen", ["Kitty Glitter"]),
    ("The gang of Professor Nobody waits.", "henchmen", []),  # the boss is no henchman
    ("The crooks swipe the crown jewels at night.", "target", ["crown jewels"]),
    ("Everyone admires the Maharajah's ruby.", "target", ["Maharajah's ruby"]),
    ("They kidnap Lady Penelope from the opera.", "target", ["Lady Penelope"]),
    ("Their lair is beneath the old Gotham pier.", "hideout", ["old Gotham pier"]),
    ("The crooks are holed up in a deserted lighthouse, laughing.", "hideout", ["deserted lighthouse"]),
    ("The headquarters of the police is busy.", "hideout", []),
    ("Robin is dangling over a vat of boiling wax!", "deathtrap", ["dangling over a vat of boiling wax"]),
    ("Batman is strapped to a giant metronome.", "deathtrap", ["strapped to a giant metronome"]),
    ("The Joker is trapped in a net.", "deathtrap", []),  # a villain caught is no deathtrap
])
def test_rules_on_single_sentences(text, field, expected):
    assert casefile.extract(text)[field] == expected


def test_the_lore_names_villains_and_their_henchmen():
    lore = Lore(counts={"Batman": 50, "Robin": 40, "Penguin": 30},
                villains={"The Penguin": {"count": 30, "episodes": [1], "aliases": ["The Penguin", "Penguin"],
                                          "henchmen": ["Hawkeye", "Sparrow"], "objects": ["umbrella"]}})
    case = casefile.autofill(casefile.empty(), "The Penguin and Hawkeye open an umbrella shop. Batman frowns.", lore)
    assert case["villains"] == ["The Penguin"] and case["henchmen"] == ["Hawkeye"]


def test_edited_fields_are_never_overwritten_and_auto_hands_them_back():
    case = casefile.autofill(casefile.empty(), NOBODY)
    mine = casefile.updated(case, {"villains": ["The Sphinx"], "hideout": list(case["hideout"])})
    assert mine["edited"] == ["villains"]  # an unchanged field stays autofill's
    again = casefile.autofill(mine, NOBODY + " Egghead's henchmen steal the golden egg.")
    assert again["villains"] == ["The Sphinx"] and "golden egg" in again["target"]
    back = casefile.autofill(casefile.updated(again, {}, auto=["villains"]), NOBODY)
    assert back["villains"] == ["Professor Nobody"] and back["edited"] == []
    # From scratch each time: an entry whose passage is gone goes too.
    assert casefile.autofill(again, "Batman broods.")["target"] == []


def test_validate_names_the_field_and_the_limit():
    with pytest.raises(Invalid, match=f"villains has 9 entries; a field may have at most {casefile.MAX_ENTRIES}"):
        casefile.validate({"villains": [f"V{i}" for i in range(9)]})
    with pytest.raises(Invalid, match=f"hideout: the entry .* at most {casefile.MAX_ENTRY_CHARS}"):
        casefile.validate({"hideout": ["x" * 81]})
    with pytest.raises(Invalid, match="no field 'loot'; its fields are: villains, henchmen"):
        casefile.validate({"loot": []})
    with pytest.raises(Invalid, match="target must be a list"):
        casefile.validate({"target": "the diamond"})
    with pytest.raises(Invalid, match="guests contains the control character"):
        casefile.validate({"guests": ["a\x1bb"]})
    assert casefile.validate({"guests": ["  Mayor   Linseed ", "mayor linseed", ""]})["guests"] == ["Mayor Linseed"]
    assert casefile.load("not json") == casefile.empty() and casefile.load("{}") == casefile.empty()


def test_case_names_and_outline():
    assert casefile.case_names({"villains": ["Professor Nobody"], "target": ["the Gotham diamond"],
                                "deathtrap": ["tied to a candle"]}) == {"Nobody", "Gotham"}
    assert [b["beat"] for b in casefile.outline("Commissioner Gordon picks up the Batphone.")] == ["batphone"]
    assert casefile.outline("") == []


def test_a_villain_introduced_by_the_deeds_of_the_shows_villains_is_found():
    """The writer's own villain is rarely called a villain: a poisoner, a forger, a
    storm-maker or a pirate is one (sentences written for this test)."""
    for opening, villain in [
        ("The Saucier, a cook with a grudge, poisons the soup at the Gotham Charity Dinner.", "Saucier"),
        ("Baron Blizzard, a meteorologist gone bad, buries Gotham City under a mountain of hail.", "Blizzard"),
        ("The Scrivener, a forger with a silver pen, signs the Mayor's name to a bogus decree.", "Scrivener"),
        ("Admiral Anchor, a pirate of the Gotham River, leaves a message in a bottle at the docks.", "Anchor"),
        ("Lady Lilt, whose songs put people to sleep, sends the bank's guards into a deep slumber.", "Lilt"),
    ]:
        found = casefile.extract(opening)["villains"]
        assert any(villain in v for v in found), (opening, found)
    assert casefile.extract("Mayor Linseed, a kindly old man, opens the Gotham Flower Show.")["villains"] == []


def test_the_villain_the_story_opens_with_leads_the_case():
    """A stock villain the model brought in, or one it made up and repeats, does not push
    the writer's own aside."""
    from batplots.story.lore import Lore

    lore = Lore({"Joker": 60}, villains={"Joker": {"count": 60, "episodes": [1], "henchmen": [], "objects": []}})
    text = ("The Saucier, a cook with a grudge, poisons the soup at the Gotham Charity Dinner. "
            "The Joker laughs somewhere. The Saucier's henchmen load the stolen silver. The Saucier escapes.")
    assert casefile.extract(text, lore)["villains"][0] == "Saucier"
    repeated = text + " The Joker steals a cake. The Joker laughs. The Joker escapes with the Joker's cake."
    assert casefile.extract(repeated, lore)["villains"] == ["Saucier", "Joker"]
