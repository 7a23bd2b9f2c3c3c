"""The show's beats (batplots.story.beats): rules on hand-written sentences, outline, cliffhangers, the corpus."""

from __future__ import annotations

import pytest

from batplots.story import beats


@pytest.mark.parametrize("sentence,beat", [
    ("The Pendulum steals the great clock from the Gotham Clockworks and leaves a riddle behind.", "crime"),
    ("At Police Headquarters, Gordon picks up the red Batphone.", "batphone"),
    ("Bruce tilts back the head of the Shakespeare bust and the Batpoles open.", "manor"),
    ("Atomic batteries to power: the Batmobile roars out of the cave.", "batmobile"),
    ("In the Batcave the Bat-computer decodes the Pendulum's message.", "batcave"),
    ("POW! BIFF! The Pendulum's henchmen go down one by one.", "fight"),
    ("The Pendulum straps the Dynamic Duo to a giant pendulum over a vat of molten brass.", "deathtrap"),
    ("Batman frees himself with the Batknife from his utility belt.", "escape"),
    ("The Pendulum is captured and taken off to jail.", "capture"),
    ("Meanwhile, the weather in the city is fine.", None),
])
def test_each_beat_has_a_rule(sentence, beat):
    assert beats.label(sentence) == beat


def test_precedence_an_escape_from_a_trap_is_an_escape_and_a_heist_at_the_manor_a_crime():
    assert beats.label("Robin manages to free himself from the deathtrap just in time.") == "escape"
    assert beats.label("The Pendulum robs Wayne Manor of its clocks.") == "crime"
    assert beats.label("The heroes are captured by the Pendulum's gang.") != "capture"  # the veto


def test_labels_and_constants_line_up():
    assert beats.BEATS == ("crime", "batphone", "manor", "batmobile", "batcave", "fight", "deathtrap", "escape",
                           "capture")
    assert set(beats.BEAT_LABELS) == set(beats.BEATS) and beats.BEAT_LABELS["manor"] == "To Wayne Manor!"


def test_label_text_and_outline_follow_the_story():
    story = ("The Pendulum steals a clock. He steals another clock. Gordon calls Batman on the Batphone. "
             "The weather is fine. POW! The Pendulum ties them to a giant pendulum over a vat of acid")
    labelled = beats.label_text(story)
    assert [b for _, b in labelled] == ["crime", "crime", "batphone", None, "fight", "deathtrap"]
    assert labelled[-1][0].endswith("vat of acid")  # the unfinished tail is labelled too
    assert beats.outline(story) == ["crime", "batphone", "fight", "deathtrap"]
    assert beats.outline("") == []


def test_cliffhanger_names_the_villain_and_a_seed_repeats_it():
    line = beats.cliffhanger("the Pendulum", seed=3)
    assert "the Pendulum" in line and "same Bat-time, same Bat-channel" in line
    assert beats.cliffhanger("the Pendulum", seed=3) == line
    assert {beats.cliffhanger(None, seed=s) for s in range(40)} == {
        c.format(villain=beats.STOCK_FOE) for c in beats.CLIFFHANGER}


def test_beat_counts_list_every_beat():
    counts = beats.beat_counts(["The Pendulum steals a clock. POW!", "Nothing happens here."])
    assert list(counts) == list(beats.BEATS) and counts["crime"] == 1 and counts["fight"] == 1
    assert sum(counts.values()) == 2


def test_the_shared_corpus_has_every_beat(shared_corpus):
    from batplots.corpus.episodes import read_corpus

    counts = beats.beat_counts(ep.plot for ep in read_corpus(shared_corpus))
    assert all(counts[b] >= 5 for b in beats.BEATS), counts
    assert 250 <= sum(counts.values()) <= 400  # about half of the 576 sentences play a beat
