"""Step biases that stop once they have done their work (batplots.story.steer)."""

from batplots.story.steer import CUE_MAX_BIAS, CUE_SLOPE, Steer

FIGHT, POW, RIDDLER, TICK = 11, 12, 21, 22


def test_a_name_is_pushed_until_the_sentence_has_it():
    steer = Steer(names={"Riddler": ((RIDDLER,), 2.5), "Tick": ((TICK,), 1.0)})
    assert steer("") == {RIDDLER: 2.5, TICK: 1.0}
    assert steer("The Riddler laughs at") == {TICK: 1.0}
    assert steer("The Riddler's men and Tick") == {}
    # A name still being written is no name yet.
    assert steer("The Ridd") == {RIDDLER: 2.5, TICK: 1.0}


def test_the_beats_cues_are_pushed_harder_until_the_labeller_finds_the_beat():
    steer = Steer(beat="fight", cues=(("fight", FIGHT), ("POW", POW)), cue_bias=2.0)
    assert steer("") == {FIGHT: 2.0, POW: 2.0}
    four = steer("Batman and Robin arrive")[FIGHT]
    assert four == 2.0 + 4 * CUE_SLOPE
    assert steer(" ".join(["word"] * 200))[FIGHT] == CUE_MAX_BIAS  # a push, never a wall
    assert steer("Batman and Robin fight the henchmen") == {}  # played: left alone
    # Another beat's words do not count as this one (the escape rule wins over fight).
    assert FIGHT in steer("Batman and Robin escape the trap just in time")
    # A cue already written is not pushed again while the beat waits for the rest.
    phone = Steer(beat="batphone", cues=(("Commissioner", 41), ("calls", 42)), cue_bias=2.0)
    assert phone("Commissioner Gordon waits") == {42: 2.0 + 3 * CUE_SLOPE}
    assert phone("Commissioner Gordon calls") == {}


def test_a_longer_cue_gets_its_rest_pushed_once_begun():
    CAVE = 31
    steer = Steer(beat="batcave", follow=((" Bat", CAVE),), cue_bias=2.0)
    assert steer("Robin races to the") == {}
    assert steer("Robin races to the Bat") == {CAVE: 2.0}
    assert steer("Robin races to the Batcave and") == {}  # played


def test_a_steer_with_nothing_to_push_is_false():
    assert not Steer()
    assert not Steer(beat="fight", cues=(), cue_bias=2.0)
    assert Steer(beat="fight", cues=(("fight", FIGHT),), cue_bias=2.0)
    assert Steer(names={"Tick": ((TICK,), 1.0)})
