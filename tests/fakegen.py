"""A scripted fake generator for web tests where the model is beside the point.

`FakeEngine` implements the two backend methods of the real `Engine` (all the
sentence counting, streaming, rewinding and locking is the real shared code):
`pieces` yields one word per "token" from sentences drawn by a seeded RNG, so the
same seed gives the same text and different seeds (almost surely) differ. It can
be slowed per piece, so cancellation and concurrency are observable, and it
records what it was asked.
"""

from __future__ import annotations

import random
import threading
import time

from batplots.model.engine.base import Cancelled, Engine, Settings

VILLAINS = ["The Joker", "The Penguin", "Catwoman", "The Riddler", "Egghead", "King Tut", "Mr. Freeze", "The Mad Hatter"]
VERBS = ["steals", "freezes", "hides", "gilds", "riddles", "auctions", "paints", "shrinks"]
OBJECTS = ["crown jewels", "bat-signal", "city reservoir", "mayor's hat", "golden egg", "museum mummy",
           "opera tickets", "giant typewriter"]
PLACES = ["Gotham Museum", "Wayne Manor", "old mill", "city hall", "docks", "planetarium", "candy factory", "zoo"]


def fake_sentence(rng: random.Random) -> str:
    return (f"{rng.choice(VILLAINS)} {rng.choice(VERBS)} the {rng.choice(OBJECTS)} "
            f"at the {rng.choice(PLACES)}.")


def fake_sentences(text: str) -> list[str]:
    """The sentences of text if every one is a sentence FakeEngine writes, else []."""
    import re

    pattern = re.compile(
        "(?:%s) (?:%s) the (?:%s) at the (?:%s)\\." % tuple("|".join(map(re.escape, words))
                                                      for words in (VILLAINS, VERBS, OBJECTS, PLACES)))
    found = pattern.findall(text)
    return found if " ".join(found) == text.strip() else []


class FakeEngine(Engine):
    name = "fake"

    def __init__(self, delay: float = 0.0, label: str = "fake-scripted"):
        super().__init__()
        self.delay = delay  # seconds per piece
        self.label = label
        self.prompts: list[str] = []
        self.started = 0
        self.cancelled = 0
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def describe(self) -> dict:
        return {"engine": self.name, "model": self.label}

    def pieces(self, prompt: str, settings: Settings, seed: int, cancel: threading.Event | None, guidance=None):
        with self._count_lock:
            self.prompts.append(prompt)
            self.started += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        rng = random.Random(seed)
        words: list[str] = []
        try:
            for _ in range(settings.max_new_tokens):
                if cancel is not None and cancel.is_set():
                    with self._count_lock:
                        self.cancelled += 1
                    raise Cancelled()
                if self.delay:
                    if cancel is not None:
                        if cancel.wait(self.delay):
                            continue  # checked at the top of the loop
                    else:
                        time.sleep(self.delay)
                if not words:
                    words = fake_sentence(rng).split(" ")
                yield " " + words.pop(0)
        finally:
            with self._count_lock:
                self.active -= 1


def fake_writer(engine: Engine | None = None, guard=None, copy_check=None) -> "Writer":
    """The web app's one Writer over a FakeEngine (or engine): one take, no lore, the
    copy guard given (None: off); copy_check replaces the guard's check."""
    from batplots.story.writer import Writer

    return Writer(engine if engine is not None else FakeEngine(), guard=guard, takes=1, copy_check=copy_check)


# Bound on a HeldEngine's hold, so a test that never releases it still ends.
HOLD_MAX_S = 60
HOLD_POLL_S = 0.01


class HeldEngine(FakeEngine):
    """A FakeEngine whose generations stop after `after` pieces until `release` is set
    or they are cancelled (at most HOLD_MAX_S): a test sees a generation under way,
    however fast or slow the machine, instead of racing a per-piece delay. The hold
    blocks the generating thread, so it suits one take at a time: takes decoded
    together in one thread would wait on the first."""

    def __init__(self, after: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.after = after
        self.release = threading.Event()
        self.holding = 0  # generations waiting at the hold now

    def pieces(self, prompt: str, settings: Settings, seed: int, cancel: threading.Event | None, guidance=None):
        for n, piece in enumerate(super().pieces(prompt, settings, seed, cancel, guidance)):
            if n >= self.after and not self.release.is_set():
                self._hold(cancel)
                if cancel is not None and cancel.is_set():
                    continue  # FakeEngine counts the cancel at its next piece
            yield piece

    def _hold(self, cancel: threading.Event | None) -> None:
        with self._count_lock:
            self.holding += 1
        try:
            deadline = time.monotonic() + HOLD_MAX_S
            while not self.release.wait(HOLD_POLL_S):
                if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                    return
        finally:
            with self._count_lock:
                self.holding -= 1
