"""Request bodies of the JSON API.

Strict: "3" is not a number and unknown fields are refused by name, so a client
bug shows up as a clear 422 rather than a silent guess. Length and range limits
are checked by the store and by `Settings.validate`, whose messages name them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from batplots.model.engine.base import Settings

MIN_ALTERNATIVES, MAX_ALTERNATIVES = 1, 5
DEFAULT_ALTERNATIVES = 3
# The settings a story keeps (the rest come from the server's command line).
STORY_SETTING_KEYS = ("sentences", "temperature", "top_p", "copy_limit")


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StorySettings(Strict):
    sentences: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    copy_limit: int | None = None  # the copy guard: 0 = off (batplots.corpus.guard)
    # The named base that writes this story (batplots.web.bases; absent: the server's own).
    model: Literal["fast", "best"] | None = None

    def given(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class NewStory(Strict):
    title: str | None = None
    settings: StorySettings | None = None


class StoryPatch(Strict):
    version: int
    title: str | None = None
    settings: StorySettings | None = None


class Versioned(Strict):
    version: int


class NewTurn(Strict):
    text: str
    version: int
    author: Literal["user", "model"] = "user"
    # For a picked alternative: the seed it was sampled with, and the writer's passage
    # typed before Alternatives (saved first, in the same request, never alone).
    seed: int | None = None
    user_text: str | None = None


class EditTurn(Strict):
    text: str
    version: int


class ContinueRequest(Strict):
    version: int
    # The next beat the writer asks for (batplots.story.beats.BEATS: "batphone", "fight"...).
    beat: str | None = None
    sentences: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    copy_limit: int | None = None
    seed: int | None = None

    def overrides(self) -> dict:
        return {k: getattr(self, k) for k in STORY_SETTING_KEYS + ("seed",) if getattr(self, k) is not None}


class AlternativesRequest(ContinueRequest):
    n: int = DEFAULT_ALTERNATIVES
    # The writer's passage still in the box: the takes continue it, nothing is saved.
    text: str | None = None


class CaseUpdate(Strict):
    """The writer's changes to the case file (batplots.story.casefile): the fields given replace
    theirs, and a changed field is the writer's from then on; `auto` hands fields back
    to autofill."""

    version: int
    villains: list[str] | None = None
    henchmen: list[str] | None = None
    guests: list[str] | None = None
    target: list[str] | None = None
    hideout: list[str] | None = None
    deathtrap: list[str] | None = None
    auto: list[str] = []

    def changes(self) -> dict:
        return {k: v for k, v in self.model_dump(exclude={"version", "auto"}).items() if v is not None}


def default_story_settings(base: Settings) -> dict:
    return {k: getattr(base, k) for k in STORY_SETTING_KEYS}
