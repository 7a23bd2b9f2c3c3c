"""The named bases the web app offers (batplots.model.bases): the server's own, and the other.

`batplots serve` loads its own base at start-up (`app.state.model`, which /v1 uses too).
When that is a named base and the other named base is installed, the app offers the other
one as well: a second ModelSide whose Writer loads in its background thread the first
time a story asks for it, so a server whose writers never pick it spends no start-up time
or memory on it. Both sides pass the one Bridge: one waiting limit for the model.

A story's settings choose a base by role (`model`: "fast" or "best"; absent = the
server's own). That choice is kept beside the engine's settings, never merged into them.
"""

from __future__ import annotations

from typing import Callable

from batplots.model import bases
from batplots.model.engine.base import SettingsError
from batplots.store.stories import NotFound
from batplots.story.lore import Lore
from batplots.story.writer import Writer
from batplots.web.modelside import ModelSide

MODEL_KEY = "model"  # the story setting that chooses the base
ROLES = tuple(base.role for base in bases.BASES.values())  # what MODEL_KEY takes: ("fast", "best")
# What makes the other base available, in the words of a refusal.
INSTALL_HINT = {bases.QWEN15.name: "make install-qwen"}


def other_named(base: bases.Base) -> bases.Base:
    """The named base that is not base."""
    return next(b for b in bases.BASES.values() if b is not base)


def second_base(engine: str, base: str | None, one_base: bool) -> bases.Base | None:
    """The named base `serve` offers beside its own: none with --one-base, when its own is
    not a named base (a .gguf, a directory) or is remote (--engine openai), or when the
    other's wheels are not installed."""
    own = bases.find(base)
    if one_base or own is None or engine == "openai":
        return None
    other = other_named(own)
    return other if bases.installed(other) else None


def engine_settings(settings: dict) -> dict:
    """A story's settings without the base choice: what the engine's Settings take."""
    return {k: v for k, v in settings.items() if k != MODEL_KEY}


class Models:
    """The model sides a story can choose from: the server's own (`main`), and the other
    named base when it is offered (`other`, loaded on first use, sharing main's bridge)."""

    def __init__(self, main: ModelSide, other_base: bases.Base | None = None,
                 load_other: Callable[[], Writer] | None = None):
        if load_other is not None and (main.base is None or other_base is None or other_base is main.base):
            raise ValueError("a second base needs the server's own to be a named base, and the other one named")
        self.main = main
        self.other = (ModelSide(load=load_other, base=other_base, bridge=main.bridge)
                      if load_other is not None else None)
        self._lores: tuple[Lore, Lore, bool] | None = None

    def sides(self) -> list[ModelSide]:
        return [self.main] + ([self.other] if self.other is not None else [])

    def choose(self, choice: str | None) -> ModelSide:
        """The side for a story's choice (None: the server's own), or SettingsError saying
        why that base is not offered here and what would offer it."""
        if choice is None:
            return self.main
        for side in self.sides():
            if side.role == choice:
                return side
        if self.main.base is None:
            raise SettingsError(MODEL_KEY, f"model: this server runs one model of its own ({self.main.what}), not a "
                                           f"named base, so there is no choice of model; leave model out")
        wanted = next(b for b in bases.BASES.values() if b.role == choice)
        how = INSTALL_HINT.get(wanted.name, wanted.install)
        if not bases.installed(wanted):
            raise SettingsError(MODEL_KEY, f"model: {choice!r} ({wanted.name}) is not installed on this server; "
                                           f"installing it ({how}) and restarting `batplots serve` offers it")
        raise SettingsError(MODEL_KEY, f"model: {choice!r} ({wanted.name}) is turned off on this server "
                                       f"(batplots serve --one-base); it offers only {self.main.role!r}")

    def for_story(self, story: dict) -> ModelSide:
        """The side a story's settings choose (SettingsError for a base not offered here)."""
        return self.choose(story["settings"].get(MODEL_KEY))

    def check_choice(self, changes: dict) -> None:
        """A story's settings change: a base chosen must be offered here; choosing the
        second base starts loading it, so it is ready sooner for the story's first turn."""
        if MODEL_KEY in changes:
            side = self.choose(changes[MODEL_KEY])
            if side is self.other:
                side.start()

    def loaded_for(self, story: dict | None) -> Writer | None:
        """The Writer of the side a story uses, else (not loaded, not offered) the server's own."""
        side = self.main
        if story is not None:
            try:
                side = self.for_story(story)
            except SettingsError:
                pass  # a base no longer offered: generating says so
        return side.writer if side.writer is not None else self.main.writer

    def story_lore(self, store, story_id: str | None) -> Lore | None:
        """The lore for a change to story_id (None: any story): its base's, read from the
        store only when the two sides' lores differ."""
        story = None
        if story_id is not None and self.lores_differ():
            try:
                story = store.get(story_id)
            except NotFound:
                pass  # the change itself says so
        writer = self.loaded_for(story)
        return writer.lore if writer is not None else None

    def lores_differ(self) -> bool:
        """Whether the two sides' lores differ (both loaded): only then does a story's own
        choice matter for its case file, and it is worth reading the story to know it."""
        if self.other is None or self.main.lore is None or self.other.lore is None:
            return False
        main, other = self.main.lore, self.other.lore
        if self._lores is None or self._lores[0] is not main or self._lores[1] is not other:
            self._lores = (main, other, main != other)  # compared once: the dicts are large
        return self._lores[2]

    def health(self) -> list[dict]:
        """/healthz's "models": each side offered (role, name, label, status), the server's own first."""
        return [{**side.entry(), "default": side is self.main} for side in self.sides()]
