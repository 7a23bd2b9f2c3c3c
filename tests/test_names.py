"""Names in a story: found, kept, mangled (batplots.story.names, pure functions)."""

from __future__ import annotations

import pytest

from batplots.story import names

STORY = ("The Pendulum, a clockmaker turned criminal, steals the great clock of Gotham City Hall. "
         "Commissioner Gordon calls Batman on the Batphone. Meanwhile Dr. Jekyll's assistant waits.")


def test_names_skip_sentence_starts_titles_and_sound_effects():
    assert names.name_words(STORY) == ["Pendulum", "Gotham", "City", "Hall", "Gordon", "Batman", "Batphone",
                                       "Jekyll"]
    assert names.names("POW! BIFF! The Joker's gang flees. I run.") == {"Joker"}


def test_kept_is_the_story_names_a_passage_uses_again():
    passage = "Batman swings at the Pendulum's henchmen while Robin watches."
    assert names.kept(STORY, passage) == {"Batman", "Pendulum"}
    assert names.kept(STORY, passage, exclude={"Batman"}) == {"Pendulum"}


@pytest.mark.parametrize("word,target", [
    ("Pendum", "Pendulum"), ("Pendemonium", "Pendulum"), ("Pendeniment", "Pendulum"), ("Jeklord", "Jekyll"),
    ("Gordan", "Gordon"),
])
def test_mangled_names_are_near_misses(word, target):
    assert names.near_miss(word, names.names(STORY)) == target


@pytest.mark.parametrize("word", ["Pendulum", "Pendulums", "Gideon", "Gorilla", "Joker", "Batmobile", "Ann"])
def test_known_names_their_endings_and_other_names_are_not(word):
    assert names.near_miss(word, names.names(STORY)) is None


def test_the_corpus_vocabulary_is_never_a_near_miss():
    known = {"Pendulum", "Batman"}
    passage = "The Penguin and the Pendum race to the Batmobile."
    assert names.near_misses(passage, known) == [("Penguin", "Pendulum"), ("Pendum", "Pendulum")]
    assert names.near_misses(passage, known, vocabulary={"Penguin", "Batmobile"}) == [("Pendum", "Pendulum")]
    assert names.near_misses("Batwoman arrives.", {"Batcave"}) == []  # the show's Bat- coinages
