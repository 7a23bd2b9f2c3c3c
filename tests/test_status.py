"""Who is caught, free, trapped or absent (batplots.story.status): what each sentence tells,
the status after a story, and the model sentences that go against it, both sides."""

import pytest

from batplots.model.weights import ADAPTERS_DIR
from batplots.story import status as st
from batplots.story.lore import load_lore


@pytest.fixture(scope="module")
def cast():
    lore = load_lore(ADAPTERS_DIR / "batman66")
    # The writer's own villain and henchman (the case file's), and a guest of his.
    return st.cast_of(lore, villains=["The Glassblower"], henchmen=["Shard"], own=["Glassblower", "Shard", "Pemberton"])


def told(sentence, cast, statuses=None):
    return st.told(sentence, cast, statuses or {})


@pytest.mark.parametrize("sentence, expected", [
    ("The Joker is arrested by Chief O'Hara.", {"Joker": "caught"}),
    ("Batman and Robin capture the Penguin and his henchmen.", {"Penguin": "caught"}),
    ("The police take the Riddler away.", {"Riddler": "caught"}),
    ("The Glassblower and Shard are led off to jail.", {"Glassblower": "caught", "Shard": "caught"}),
    ("The Joker, now in jail, plots his revenge.", {"Joker": "caught"}),
    ("Commissioner Gordon arrests the Mad Hatter.", {"Mad Hatter": "caught"}),
    ("The Penguin ties Batman and Robin to a giant umbrella.", {"Batman": "trapped", "Robin": "trapped"}),
    ("Batman and Robin are strapped to a conveyor belt.", {"Batman": "trapped", "Robin": "trapped"}),
    # A hero or a guest captured by a villain is trapped, not jailed.
    ("Batman and Robin are captured by the Joker's henchmen.", {"Batman": "trapped", "Robin": "trapped"}),
    ("The Glassblower kidnaps Pemberton.", {"Pemberton": "trapped"}),
    ("Aunt Harriet is away in Europe.", {"Aunt Harriet": "absent"}),
    ("Alfred has left for London to visit his cousin.", {"Alfred": "absent"}),
    ("Alfred sails for England to visit his ailing sister.", {"Alfred": "absent"}),
    ("Aunt Harriet flies off to Europe for a month.", {"Aunt Harriet": "absent"}),
    ("Commissioner Gordon departs on a fishing trip.", {"Commissioner Gordon": "absent"}),
    ("The Joker escapes from prison.", {"Joker": "free"}),
    ("Shard breaks the Glassblower out of jail.", {"Glassblower": "free"}),
])
def test_what_a_sentence_tells(cast, sentence, expected):
    assert told(sentence, cast) == expected


@pytest.mark.parametrize("sentence", [
    "The Joker plans to escape.",  # a plan, not an escape
    "Batman vows to capture the Riddler.",
    "Will the police arrest the Penguin?",  # a question tells nothing
    "The Joker's henchmen are arrested.",  # his men, not the Joker
    "Batman races away from the bomb.",  # "away from" is no trip
    "Batman and Robin head for the museum.",  # a place in town is no trip
    "The Penguin flies to the rescue of his henchmen.",
    "Robin is caught off guard by the Riddler's riddle.",
])
def test_what_a_sentence_does_not_tell(cast, sentence):
    assert told(sentence, cast) == {}


def test_a_passive_arrest_does_not_catch_the_next_name(cast):
    assert told("The Joker is arrested and Batman smiles.", cast) == {"Joker": "caught"}


def test_the_story_in_order_changes_status(cast):
    story = ["The Joker is safely behind bars in the state penitentiary.", "Aunt Harriet is on vacation in Europe.",
             "The Penguin ties Batman and Robin to a giant umbrella."]
    assert st.track(story, cast) == {"Joker": "caught", "Aunt Harriet": "absent", "Batman": "trapped",
                                     "Robin": "trapped"}
    later = story + ["The Joker breaks out of jail.", "Robin uses his Batarang to cut the ropes.",
                     "Aunt Harriet returns from Europe a day early."]
    assert st.track(later, cast) == {}
    again = later + ["Chief O'Hara's men haul the Joker off to prison."]
    assert st.track(again, cast) == {"Joker": "caught"}


def slips(sentence, cast, **statuses):
    return st.slips(sentence, cast, {k.replace("_", " "): v for k, v in statuses.items()})


@pytest.mark.parametrize("sentence, what", [
    ("The Joker robs the Gotham National Bank.", "caught, yet robs"),
    ("The Joker laughs at Batman and Robin.", "caught, yet laughs"),
    ("Meanwhile, the Joker orders his henchmen to grab the loot.", "caught, yet orders"),
    ("The Joker drives to his hideout.", "caught, yet drives"),
])
def test_a_caught_villain_acting_freely_slips(cast, sentence, what):
    assert slips(sentence, cast, Joker="caught") == [("Joker", what)]


@pytest.mark.parametrize("sentence", [
    "The Joker, now in jail, plots his revenge.",  # the show's own: acting from his cell
    "The Joker laughs at Batman from his cell.",
    "The Joker breaks out of jail and robs the bank.",  # the sentence tells the escape
    "Batman wonders what the Joker is planning.",  # not acting
    "Batman tells Robin that the Joker robbed banks before.",  # told of, not done
    "The Joker's henchmen rob the bank.",  # his men are free
    "The Joker wants to rob the bank.",
    "The Penguin robs the bank.",  # another villain, free
])
def test_a_caught_villain_in_custody_or_escaping_is_fine(cast, sentence):
    assert slips(sentence, cast, Joker="caught") == []


def test_a_trip_makes_a_character_absent_but_a_heros_trip_takes_the_story_along(cast):
    story = ["Alfred sails for England to visit his ailing sister."]
    assert st.track(story, cast) == {"Alfred": "absent"}
    assert st.slips("Alfred pours tea for Commissioner Gordon.", cast, st.track(story, cast)) == [
        ("Alfred", "away, yet here")]
    # Batman and Robin go after him: the scene is wherever they are; nobody is "away" there.
    moved = story + ["Batman and Robin fly to England on the trail of Lord Ffogg."]
    assert st.track(moved, cast) == {}
    assert st.slips("Alfred pours tea for Batman and Robin.", cast, st.track(moved, cast)) == []


def test_an_absent_character_in_the_scene_needs_a_reason(cast):
    assert slips("Aunt Harriet serves tea to Bruce and Dick.", cast, Aunt_Harriet="absent") == [
        ("Aunt Harriet", "away, yet here")]
    assert slips("Alfred opens the door for Commissioner Gordon.", cast, Alfred="absent") == [("Alfred", "away, yet here")]
    for fine in ("Aunt Harriet returns from Europe a day early.",  # an arrival is a reason
                 "Bruce reads a postcard from Aunt Harriet.",  # named from afar
                 "Aunt Harriet phones from Paris to ask about Dick's homework.",
                 "Dick misses Aunt Harriet's apple pie.",  # possessive, and missed
                 "Bruce and Dick serve tea."):
        assert slips(fine, cast, Aunt_Harriet="absent") == [], fine


def test_a_trapped_hero_does_not_drive_off_without_an_escape(cast):
    assert slips("Batman and Robin race to the Batmobile.", cast, Batman="trapped", Robin="trapped") == [
        ("Batman", "trapped, yet race to"), ("Robin", "trapped, yet race to")]
    for fine in ("Batman and Robin escape and race to the Batmobile.",
                 "Robin cuts the ropes with his Batarang, and they race to the Batmobile.",
                 "Batman struggles against the ropes as the water rises."):
        assert slips(fine, cast, Batman="trapped", Robin="trapped") == [], fine


def test_nobody_set_up_nothing_to_slip(cast):
    assert slips("The Joker robs the bank.", cast) == []
