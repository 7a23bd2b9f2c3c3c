import pytest

from batplots.text import (
    clean_model_text,
    complete_sentences,
    ends_sentence,
    join_continuation,
    normalize_whitespace,
    sentence_spans,
    sentence_start,
    split_sentences,
)

# (text, expected sentences); the last item may be an unfinished tail.
CASES = [
    ("Batman arrives. Robin follows.", ["Batman arrives.", "Robin follows."]),
    ('"Holy haberdashery, Batman!" cries Robin.', ['"Holy haberdashery, Batman!" cries Robin.']),
    ('"Holy haberdashery, Batman!" cries Robin. They leave.',
     ['"Holy haberdashery, Batman!" cries Robin.', "They leave."]),
    ("“Holy smoke!” says Robin. Batman nods.", ["“Holy smoke!” says Robin.", "Batman nods."]),
    ('Robin shouts, "To the Batmobile!" They run.', ['Robin shouts, "To the Batmobile!"', "They run."]),
    ('"Stop! Thief!" he yells.', ['"Stop! Thief!" he yells.']),
    ('He said, "Wait. Look." Then he left.', ['He said, "Wait. Look."', "Then he left."]),
    ("Mr. Freeze waits.", ["Mr. Freeze waits."]),
    ("Mrs. Cooper calls Dr. Cassandra.", ["Mrs. Cooper calls Dr. Cassandra."]),
    ("They meet at St. Swithin's. The bells ring.", ["They meet at St. Swithin's.", "The bells ring."]),
    ("Lt. Hart salutes. Sgt. Cole too.", ["Lt. Hart salutes.", "Sgt. Cole too."]),
    ("The U.S. Navy sends a ship.", ["The U.S. Navy sends a ship."]),
    ("J. Edgar Hoover phones.", ["J. Edgar Hoover phones."]),
    ("Neil A. Hamilton plays Gordon. He is great.", ["Neil A. Hamilton plays Gordon.", "He is great."]),
    ("The gem weighs 3.5 carats. It glows.", ["The gem weighs 3.5 carats.", "It glows."]),
    ("It costs $1,000.50 today.", ["It costs $1,000.50 today."]),
    ("Robin waits... Batman arrives.", ["Robin waits...", "Batman arrives."]),
    ("Robin waits... and waits.", ["Robin waits... and waits."]),
    ("Robin waits… Batman arrives.", ["Robin waits…", "Batman arrives."]),
    ("Is it the Joker? No!", ["Is it the Joker?", "No!"]),
    ("What?! Impossible!", ["What?!", "Impossible!"]),
    ("Holy cow!!! The Batmobile!", ["Holy cow!!!", "The Batmobile!"]),
    ("He was 19 (Burt Ward was 19 at the time.) Robin waits.",
     ["He was 19 (Burt Ward was 19 at the time.)", "Robin waits."]),
    ("Batman (Adam West) arrives. Robin (Burt Ward) too.", ["Batman (Adam West) arrives.", "Robin (Burt Ward) too."]),
    ("The aside (it has (nested) parts. Really.) ends. Next.", ["The aside (it has (nested) parts. Really.) ends.", "Next."]),
    ("(He leaves.) She stays.", ["(He leaves.)", "She stays."]),
    ("The cat. the dog.", ["The cat. the dog."]),
    ("Episode 12. The Joker returns.", ["Episode 12.", "The Joker returns."]),
    ("It is 1966. 1967 follows.", ["It is 1966.", "1967 follows."]),
    ("Batman arrives", ["Batman arrives"]),
    ("Batman arrives. Robin", ["Batman arrives.", "Robin"]),
    ("", []),
    ("   ", []),
    ("  Batman arrives.   Robin follows.  ", ["Batman arrives.", "Robin follows."]),
    ("Batman arrives.\nRobin follows.", ["Batman arrives.", "Robin follows."]),
    ("Catwoman purrs, 'Meow.' Batman frowns.", ["Catwoman purrs, 'Meow.'", "Batman frowns."]),
    ("Robin asks, “Where to?” Batman points.", ["Robin asks, “Where to?”", "Batman points."]),
    ("No. 1 is the Riddler.", ["No. 1 is the Riddler."]),
    ("The Joker vs. Batman. Round one.", ["The Joker vs. Batman.", "Round one."]),
    ("Batman—the Caped Crusader—arrives. Robin too.", ["Batman—the Caped Crusader—arrives.", "Robin too."]),
    ("Ça va. Élan arrives.", ["Ça va.", "Élan arrives."]),
    ("Zap! Pow! Biff!", ["Zap!", "Pow!", "Biff!"]),
    ('"Zap!" "Pow!" They fight.', ['"Zap!"', '"Pow!"', "They fight."]),
    ("Gotham's Mayor Linseed speaks. [Citation needed.] Then.", ["Gotham's Mayor Linseed speaks.", "[Citation needed.]", "Then."]),
    ("At 10 p.m. the raid begins.", ["At 10 p.m. the raid begins."]),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_table_is_large():
    assert len(CASES) >= 40


@pytest.mark.parametrize("text", [
    "He met Mr.",  # "Mr." may be a title: more text could follow
    "The gem weighs 3.",  # may become 3.5
    "Batman arrives.",  # may become "Batman arrives..." or ".)"
    'Robin cries, "Holy smoke!',  # the quote is still open
])
def test_growing_text_has_no_boundary_at_its_end(text):
    spans, rest = sentence_spans(text, final=False)
    assert spans == [] and rest == 0


def test_growing_text_keeps_earlier_sentences():
    assert complete_sentences("Batman left. Mr.", final=False) == ["Batman left."]
    assert complete_sentences("Batman left. Then", final=False) == ["Batman left."]


def test_spans_point_into_the_text():
    text = "  One here.  Two there! Three"
    spans, rest = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["One here.", "Two there!"]
    assert text[rest:] == "Three"


@pytest.mark.parametrize("text,expected", [
    ("Batman arrives.", True), ('He cries, "Holy smoke!"', True), ("Batman arrives", False),
    ("Meet Mr.", False), ("", False), ("Wait (really.)", True),
])
def test_ends_sentence(text, expected):
    assert ends_sentence(text) is expected


@pytest.mark.parametrize("story,cont,expected", [
    ("Batman arrives.", "Robin follows.", " Robin follows."),
    ("Batman arrives.", "   Robin follows.", " Robin follows."),
    ("Batman arrives. ", "Robin follows.", "Robin follows."),
    ("Batman arrives.\n", " Robin follows.", "Robin follows."),
    ("", " Robin follows.", "Robin follows."),
    ("Batman arrives.", "", ""),
])
def test_join_continuation(story, cont, expected):
    assert join_continuation(story, cont) == expected
    # The user's text is never changed: appending gives the story unchanged as prefix.
    assert (story + join_continuation(story, cont)).startswith(story)


def test_normalize_whitespace():
    assert normalize_whitespace("  a \n\t b  ") == "a b"


def test_clean_model_text_removes_control_characters_and_runs():
    assert clean_model_text("a\x00b  \n c") == "a b c"
    assert clean_model_text("Cafe\u0301") == "Café"


@pytest.mark.parametrize("raw, clean", [
    ("*Echoes from the past.", "Echoes from the past."), ("** Holy bats!", "Holy bats!"),
    ("and then he left.", "And then he left."), ("— a dash.", "A dash."), ("…and so.", "And so."),
    ('"Holy!" cries Robin.', '"Holy!" cries Robin.'), ("(Robin) waits.", "(Robin) waits."), ("7 cats.", "7 cats."),
    ("***", ""),
])
def test_sentence_start(raw, clean):
    assert sentence_start(raw) == clean
    if clean:  # joined after another sentence, it now splits as a sentence of its own
        assert split_sentences("Robin waits. " + clean) == ["Robin waits.", clean]
