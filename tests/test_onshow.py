"""What the show never has (batplots.story.onshow): a death told as fact, the heroes' gear in
a villain's hands. Sentences a blind reader flagged must break the rules; the show's own
threats, plans, beliefs and thefts must pass, and so must the corpus's plot summaries."""

import re

import pytest

from batplots.model.weights import ADAPTERS_DIR
from batplots.story import onshow
from batplots.story import status as st
from batplots.story.bible import Bible
from batplots.story.lore import load_lore


@pytest.fixture(scope="module")
def lore():
    return load_lore(ADAPTERS_DIR / "batman66")


@pytest.fixture(scope="module")
def cast(lore):
    return st.cast_of(lore, villains=["Egghead"], henchmen=["Omelet", "Coddle"], own=["Omelet", "Coddle"])


@pytest.mark.parametrize("sentence", [
    # What blind readers flagged ("the 1966 villains don't murder"; "Batman left paraplegic").
    "They're crushed to death.",
    "Egghead plans the robbery, then he commits another murder at the observatory.",
    "His plan succeeds: Wayne Manor burns, the prince loses his life, and Batman is rendered a paraplegic.",
    "Batman is killed while Robin tries to free him.",
    "The Joker then attacks and kills his henchmen.",
    "The Honeybee dies during the cake analysis.",
    "Bond returns to Gotham City where Batman finds that Gimple had been murdered.",
])
def test_a_death_told_as_fact_breaks_the_show(sentence):
    assert onshow.deaths(sentence), sentence


@pytest.mark.parametrize("sentence", [
    # The show's own ways with death: threats, deathtraps, beliefs, plans, rescues.
    "The Riddler threatens to spin them to death in a giant generator.",
    "Believing his foes to be dead, the Riddler places the statue inside the museum.",
    "Robin is about to be pushed off a high ledge to plummet to his death.",
    "Mr. Freeze says he will have to murder Robin as well.",
    "Batman and Robin are apparently killed in the shootout.",
    "The Puzzler is presumed dead after his balloon bursts.",
    "Will Batman and Robin be crushed to death?",
    "Batman saves Robin before the acid can kill him.",
    "The applause dies down as the Joker takes the stage.",
    "O'Hara is dead set on catching the Penguin himself.",
    "The deadly trap springs shut on the Dynamic Duo.",
    "Batman must think of a way out of their predicament before he dies.",  # not yet
    "Rime immediately informs Frost that he is dead.",  # said, not told
])
def test_threats_plans_and_beliefs_are_the_shows_own(sentence):
    assert onshow.deaths(sentence) == [], sentence


@pytest.mark.parametrize("sentence, expected", [
    ("During the day they operate from the Mad Hatter's Batmobile.", "Mad Hatter's Batmobile"),
    ("And then the Gardener is summoned by The Batmobile Gang.", "Batmobile Gang"),
    ("The Riddler returns to the Batcave with the loot.", "Riddler returns to the Batcave"),
    ("As Egghead watches, Omelet goes off in his Batmobile for a robbery.", "Omelet goes off in his Batmobile"),
    ("King Tut is being held captive in The Batcave!", "King Tut is being held captive in The Batcave"),
])
def test_the_heroes_gear_in_a_villains_hands_breaks_the_show(cast, sentence, expected):
    assert expected in onshow.gear_slips(sentence, cast)


@pytest.mark.parametrize("sentence", [
    "Batman and Robin race to the Batcave to study the Joker's clue.",
    "Back at the Batcave, Batman analyses the Riddler's riddle.",
    "The Joker steals the Batmobile while the Dynamic Duo are inside the bank.",  # a theft is the show's
    "The Penguin sneaks into the Batcave disguised as a milkman.",
    "Batman drives the Batmobile to Egghead's observatory.",
    "Commissioner Gordon calls the Batcave on the Batphone about the Penguin.",
    "Catwoman rides off in her Catmobile.",
])
def test_the_heroes_own_gear_and_the_shows_thefts_pass(cast, sentence):
    assert onshow.gear_slips(sentence, cast) == [], sentence


def test_the_bible_names_both_rules(lore):
    bible = Bible("Egghead and his henchmen Omelet and Coddle rent the Gotham Observatory.", lore,
                  case_villains=["Egghead"], case_henchmen=["Omelet", "Coddle"])
    assert [str(b) for b in bible.breaks("They're crushed to death.")] == ["death ('re crushed to death)"]
    assert [b.rule for b in bible.breaks("Coddle drives the Batmobile to the bank.")] == ["gear"]
    assert bible.breaks("Egghead laughs as Omelet and Coddle load the telescope.") == []


def test_the_corpus_plot_summaries_never_break_them(lore, shared_corpus):
    """The rules' premise, measured: the show's own summaries tell no death as done and
    give no villain the heroes' gear (the rules would resample the show itself)."""
    cast = st.cast_of(lore)
    sentences = re.split(r"(?<=[.!?])\s+", shared_corpus.read_text())
    deaths = [s for s in sentences if onshow.deaths(s)]
    gear = [s for s in sentences if onshow.gear_slips(s, cast)]
    assert len(sentences) > 500
    assert deaths == [] and gear == [], (deaths, gear)
