"""The case file's rules (batplots.story.casefile) on hand-written sentences."""

import re

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


# ---------------------------------------------------------------- issue #25 part 0: the case file reads the story right

GLASS = "Late at night the Glassblower and his henchman Shard tiptoe into the Gotham Planetarium."


def _lore():
    from batplots.model.weights import ADAPTERS_DIR
    from batplots.story.lore import load_lore

    return load_lore(ADAPTERS_DIR / "batman66")


def test_the_issues_opening_gives_the_glassblower_and_his_henchman_never_late():
    for lore in (None, _lore()):
        case = casefile.extract(GLASS, lore)
        assert case["villains"] == ["Glassblower"] and case["henchmen"] == ["Shard"], case
        assert case["guests"] == [] and case["target"] == []


@pytest.mark.parametrize("text, word", [
    ("Late that afternoon, the Pinwheel plans to steal the Gotham Windmill's sails.", "Late"),
    ("Rich old Mrs. Gold hosts a ball, unaware that the jewel thief Magpie is a guest.", "Rich"),
    ("Frost covers the Batmobile. The crook Dr. Snow robs the Gotham Ice Rink.", "Frost"),
    ("Hope fades as the villain Nimbus steals the sun lamp.", "Hope"),
    ("Strange lights fill the sky. The criminal Zapp kidnaps a scientist.", "Strange"),
    ("Monday morning, the Scarecrow sends a threat to the Mayor.", "Monday"),
    ("Suddenly the villain Vortex appears. Meanwhile Robin waits.", "Suddenly"),
])
def test_a_word_only_starting_a_sentence_is_never_a_name(text, word):
    case = casefile.extract(text, _lore())
    names = casefile.case_names(case)
    assert word not in names, case
    assert case["villains"], case  # the story's villain is still found


def test_a_sentence_start_the_story_also_uses_mid_sentence_or_the_lore_knows_is_a_name():
    case = casefile.extract("Frost covers the windows as Dr. Frost, the frozen-food king, plots to freeze the "
                            "Gotham water supply.", _lore())
    assert case["villains"] == ["Dr. Frost"]
    assert casefile.extract("Catwoman sneaks into the Gotham Pet Show.", _lore())["villains"] == ["Catwoman"]
    # The lore's seed lists know Marsha even where the shipped lore.json has no count for her.
    assert casefile.extract("Marsha, Queen of Diamonds, plans to steal the crown.")["villains"] == ["Marsha"]


def test_the_writers_villain_keeps_the_lead_against_names_a_model_turn_brings_in():
    lore = _lore()
    shard = GLASS + " Shard steals the star projector and Shard hides it. Shard laughs as Shard escapes."
    case = casefile.extract(shard, lore)
    assert case["villains"] == ["Glassblower"] and case["henchmen"] == ["Shard"]
    zorg = ("The Glassblower tiptoes into the Gotham Planetarium to steal the star projector. Zorg laughs. "
            "Zorg steals a bus. Zorg escapes and Zorg hides.")
    assert casefile.extract(zorg, lore)["villains"] == ["Glassblower", "Zorg"]
    joker = GLASS + " The Joker steals a pie. The Joker laughs and the Joker escapes."
    assert casefile.extract(joker, lore)["villains"] == ["Glassblower", "Joker"]


def test_a_curator_or_a_victim_is_a_guest_not_a_henchman():
    lore = _lore()
    case = casefile.extract("The museum curator, Dr. Quince, is taken prisoner by the Glassblower's henchmen Shard "
                            "and Splinter.", lore)
    assert case["villains"] == ["Glassblower"] and case["henchmen"] == ["Shard", "Splinter"]
    assert case["guests"] == ["Dr. Quince"]
    case = casefile.extract("The Glassblower plans to steal the crystal lens. The museum curator, Dr. Ames, begs "
                            "Batman to guard it.", lore)
    assert case["guests"] == ["Dr. Ames"] and case["henchmen"] == [] and case["villains"] == ["Glassblower"]
    case = casefile.extract("Miss Penny Farthing, a cyclist, reports that her prize bicycle was stolen by the "
                            "Spokesman.", lore)
    assert case == {**case, "villains": ["Spokesman"], "guests": ["Miss Penny Farthing"], "target": ["prize bicycle"]}


def test_target_hideout_and_deathtrap_are_short_noun_phrases_or_empty():
    case = casefile.extract("The Glassblower vows to steal the Tiffany window from the museum; glass without "
                            "damaging anything else is his trademark.")
    assert case["target"] == ["Tiffany window"]
    assert casefile.clip("from the museum; glass without damaging anything else") == ""
    assert casefile.clip("by the Spokesman") == ""
    case = casefile.extract("Batman and Robin are lowered toward a giant vat of molten glass in the Glassblower's "
                            "furnace room.")
    assert case["villains"] == ["Glassblower"] and case["hideout"] == ["furnace room"]
    assert case["deathtrap"] == ["lowered toward a giant vat of molten glass"]
    assert casefile.extract("The Penguin and his henchmen hole up in an umbrella factory on the waterfront.",
                            _lore())["hideout"] == ["umbrella factory"]
    assert casefile.extract("Commissioner Gordon receives a ransom note from the Scarecrow demanding a million "
                            "dollars.")["target"] == ["million dollars"]
    # A vault of gold in a riddle is no deathtrap; a hero must be in peril.
    assert casefile.extract("Gordon reads the clue: a vault of gold that never sleeps.")["deathtrap"] == []
    assert casefile.extract("Bruce Wayne admires a giant vat of molten glass at the fair.")["deathtrap"] == []


def test_every_phrase_the_set_gives_is_short():
    from batplots.measure import casefile_eval

    for item in casefile_eval.load_set():
        case = casefile.extract(item["text"], _lore())
        for field in ("target", "hideout", "deathtrap"):
            for entry in case[field]:
                assert not re.search(r"[;:!?]", entry) and len(entry.split()) <= casefile.PHRASE_WORDS + 3, entry


# The tuning part's figures when the rules were last tuned (benchmarks/casefile_accuracy.py;
# docs/measurements/casefile-2026-12-02.json). A change that drops a field's F1 by more
# than 0.05 fails here: re-measure, and lower a figure only on purpose.
TUNING_F1 = {"villains": 1.0, "henchmen": 0.963, "guests": 1.0, "target": 0.938, "hideout": 1.0, "deathtrap": 1.0}
TUNING_LEAD = 1.0


def test_the_tuning_part_scores_stay_where_they_were_tuned():
    from batplots.measure import casefile_eval

    tuning, heldout = casefile_eval.parts(casefile_eval.load_set())
    assert len(tuning) + len(heldout) >= 40 and len(heldout) >= (len(tuning) + len(heldout)) // 4
    assert any(item["text"] == GLASS for item in tuning)
    result = casefile_eval.score(tuning, _lore())
    for field, f1 in TUNING_F1.items():
        assert result["fields"][field]["f1"] >= f1 - 0.05, (field, result["fields"][field])
    assert result["lead"]["share"] >= TUNING_LEAD - 0.05


@pytest.mark.parametrize("field, found, expected, same", [
    ("guests", "Dr. Lavinia Ames", "Ames", True),
    ("villains", "the Glassblower", "Glassblower", True),
    ("villains", "King Tut", "Tut", True),
    ("villains", "Late", "Glassblower", False),
    ("deathtrap", "lowered into a giant vat of molten glass", "giant vat of molten glass", True),
    ("target", "from the museum; glass without damaging anything else", "glass", False),
    ("hideout", "old music hall on Tin Pan", "old music hall", True),
])
def test_the_scores_matching(field, found, expected, same):
    from batplots.measure import casefile_eval

    assert casefile_eval.matches(field, found, expected) is same


def test_the_score_counts_precision_recall_and_the_lead():
    from batplots.measure import casefile_eval

    items = [{"text": GLASS, "expected": {"villains": ["Glassblower"], "henchmen": ["Shard"]}},
             {"text": "Batman broods.", "expected": {}}]

    def fake(text, lore):
        return {**casefile.empty(), "villains": ["Late", "Glassblower"]} if text == GLASS else casefile.empty()
    result = casefile_eval.score(items, extract=fake, detail=True)
    assert result["fields"]["villains"] == {"matched": 1, "found": 2, "expected": 1, "precision": 0.5,
                                            "recall": 1.0, "f1": 0.667}
    assert result["fields"]["henchmen"]["recall"] == 0.0 and result["fields"]["henchmen"]["precision"] is None
    assert result["lead"] == {"right": 0, "of": 1, "share": 0.0}
    assert [m["id"] for m in result["misses"]] == [None]
