"""Terminal co-writing: the user writes, the model adds N sentences, and back.

Works the same on a terminal and with piped stdin (one user turn per line), so
it can be tested and scripted. The story rules (limits, how passages are cleaned and
joined) and the Markdown export are the web app's own (batplots.story.rules,
batplots.story.export): a story reads the same whichever face wrote it.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from batplots.story import beats as beatslib
from batplots.story import casefile
from batplots.story.beats import BUTTON_BEATS
from batplots.model.engine import Rewind, Settings, SettingsError
from batplots.model.engine.base import MAX_SEED, MIN_SEED, EngineError
from batplots.corpus.guard import flag_text
from batplots.story.rules import MAX_TURNS, Invalid, clean_text, story_text
from batplots.story.writer import Writer

_BEAT_HELP = textwrap.fill(
    f"the model writes the next beat of the show: {', '.join(BUTTON_BEATS)} (or "
    f"{', '.join(b for b in beatslib.BEATS if b not in BUTTON_BEATS)}); a deathtrap ends on a cliffhanger",
    width=80, initial_indent=" " * 20, subsequent_indent=" " * 20)[20:]
HELP = f"""Write a sentence or two and press Enter; the model adds its sentences.
An empty Enter lets the model go on alone.
Commands:
  /beat NAME        {_BEAT_HELP}
  /case             the case file: villains, henchmen, guests, target, hideout,
                    deathtrap (filled in from the story as it grows)
  /case FIELD A, B  set a field yourself (kept from then on); /case FIELD auto
                    hands it back to the story
  /outline          the beats the story has had
  /retry            a new sample of the model's last passage
  /undo             remove the last passage (yours or the model's)
  /sentences N      sentences the model adds per turn (1-5)
  /temperature T    randomness (0-2; 0 = always the likeliest word)
  /show             print the story so far
  /sources          where each sentence of the model's last passage comes closest to the corpus
  /save FILE        save the story as Markdown, passages marked by author
  /help             this help
Ctrl-D ends the session."""


@dataclass
class Turn:
    author: str  # "user" or "model"
    text: str  # stripped passage
    seed: int | None = None
    provenance: list[dict] | None = None  # model turns: per sentence, its closest corpus passage


DEFAULT_TITLE = "A Batman '66 episode"


def to_markdown(turns: list[Turn], title: str = DEFAULT_TITLE, case: dict | None = None) -> str:
    """The web app's Markdown export of the same story: the case file, then every
    passage marked by its author, escaped for Markdown."""
    from batplots.story.export import to_markdown as story_markdown  # here: the web package loads FastAPI

    return story_markdown({"title": title, "case_file": case,
                           "turns": [{"author": t.author, "text": t.text} for t in turns]})


class WriteSession:
    """One co-writing session over an engine; `handle` takes one input line."""

    def __init__(self, writer: Writer, settings: Settings, out: TextIO | None = None, err: TextIO | None = None):
        self.writer = writer
        self.engine = writer.engine
        self.settings = settings.validate()
        self.turns: list[Turn] = []
        self.case = casefile.empty()  # the story's case file (batplots.story.casefile), as on the page
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._retries = 0

    # --- output -------------------------------------------------------------------
    def say(self, message: str) -> None:
        print(message, file=self.err, flush=True)

    def _refill_case(self) -> None:
        self.case = casefile.autofill(self.case, [t.text for t in self.turns], self.writer.lore)

    def _generate(self, beat: str | None = None) -> None:
        """Add a model passage (playing beat, when given), streaming it to the terminal
        (or printing it once when piped)."""
        settings = self.settings
        if settings.seed is not None and self._retries:
            # A fixed seed would give the same passage again: step it for each retry.
            settings = replace(settings, seed=(settings.seed + self._retries) % (MAX_SEED + 1) + MIN_SEED)
        tty = self.out.isatty()
        take = self.writer.stream(story_text(self.turns), settings, case=self.case, beat=beat,
                                  writer_text=story_text([t for t in self.turns if t.author == "user"]))
        draft = ""
        if tty:
            self.out.write("\033[3m")  # the model's passages in italics
        try:
            for event in take:
                if isinstance(event, Rewind):
                    if tty:
                        self.out.write("\b" * len(draft) + "\033[K" + event.text)
                    draft = event.text
                else:
                    draft += event
                    if tty:
                        self.out.write(event)
                        self.out.flush()
        except EngineError as exc:  # a remote server down or slow: the story stays as it was
            if tty:
                self.out.write("\033[0m\n")
            self.say(f"batplots: the model failed: {exc}. Your story is unchanged; try again.")
            return
        result = take.result
        if tty:
            self.out.write("\033[0m\n")
        else:
            self.out.write(f"model> {result.text.strip()}\n")
        self.out.flush()
        if result.trimmed:
            self.say("(the token cap cut the model's last sentence, so it was left out)")
        for flag in result.flags:
            self.say(flag_text(flag))
        if result.text.strip():
            self.turns.append(Turn("model", result.text.strip(), result.settings.seed, result.provenance))
            self._refill_case()
        else:
            self.say("The model wrote no complete sentence; try /retry or write on.")

    # --- commands -------------------------------------------------------------------
    def handle(self, line: str) -> None:
        """Act on one line of input: a command or a user passage."""
        line = line.strip()
        if not line:  # an empty Enter lets the model go on, as an empty box does on the page
            self._go_on(None, "then press Enter")
            return
        if line.startswith("/"):
            self._command(line)
            return
        try:
            line = clean_text(line, "That passage")
        except Invalid as exc:
            self.say(f"{exc}. Nothing was added.")
            return
        if len(self.turns) + 2 > MAX_TURNS:
            self.say(f"This story has reached {MAX_TURNS} passages; /save it and start a new one.")
            return
        self.turns.append(Turn("user", line))
        self._refill_case()
        self._retries = 0
        self._generate()

    def _command(self, line: str) -> None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name == "/help":
            self.say(HELP)
        elif name == "/retry":
            if not self.turns or self.turns[-1].author != "model":
                self.say("Nothing to retry: the last passage is not the model's.")
                return
            self.turns.pop()
            self._retries += 1
            self._generate()
        elif name == "/undo":
            if not self.turns:
                self.say("Nothing to undo.")
                return
            removed = self.turns.pop()
            self._refill_case()
            self.say(f"Removed the {'model' if removed.author == 'model' else 'your'} passage: {removed.text[:60]}")
        elif name == "/beat":
            self._beat(arg)
        elif name == "/case":
            self._case(arg)
        elif name == "/outline":
            had = beatslib.outline(story_text(self.turns))
            self.say("Beats so far: " + (", ".join(beatslib.BEAT_LABELS[b] for b in had) if had else "none yet"))
        elif name in ("/sentences", "/temperature"):
            self._set(name[1:], arg)
        elif name == "/show":
            print(story_text(self.turns), file=self.out, flush=True)
        elif name == "/sources":
            self._sources()
        elif name == "/save":
            if not arg:
                self.say("Usage: /save FILE (for example /save episode.md)")
                return
            path = Path(arg).expanduser()
            try:
                path.write_text(to_markdown(self.turns, case=self.case), encoding="utf-8")
            except OSError as exc:
                self.say(f"Could not save to {path}: {exc.strerror or exc}")
                return
            self.say(f"Saved {len(self.turns)} passages to {path}")
        else:
            self.say(f"Unknown command {name}. Commands: /beat /case /outline /retry /undo /sentences /temperature "
                     "/show /sources /save /help")

    def _beat(self, arg: str) -> None:
        beat = arg.strip().lower()
        if beat not in beatslib.BEATS:
            self.say(f"Usage: /beat NAME, one of: {', '.join(BUTTON_BEATS)} "
                     f"(or {', '.join(b for b in beatslib.BEATS if b not in BUTTON_BEATS)})")
            return
        self._go_on(beat, "then ask for a beat")

    def _go_on(self, beat: str | None, how: str) -> None:
        """The model adds a passage to the story as it stands (playing beat, when given)."""
        if not self.turns:
            self.say(f"The story is empty: write its first sentence or two, {how}.")
            return
        if len(self.turns) + 1 > MAX_TURNS:
            self.say(f"This story has reached {MAX_TURNS} passages; /save it and start a new one.")
            return
        self._retries = 0
        self._generate(beat)

    def _case(self, arg: str) -> None:
        if arg:
            field, _, value = arg.partition(" ")
            field = field.lower()
            try:
                if value.strip().lower() == "auto":
                    self.case = casefile.updated(self.case, {}, auto=[field])
                else:
                    entries = [v.strip() for v in value.split(",") if v.strip()]
                    self.case = casefile.updated(self.case, {field: entries})
            except Invalid as exc:
                self.say(f"Not changed: {exc}")
                return
            self._refill_case()
        for field in casefile.FIELDS:
            mark = " (yours)" if field in self.case["edited"] else ""
            self.say(f"{casefile.FIELD_LABELS[field]}{mark}: {', '.join(self.case[field]) or '-'}")

    def _sources(self) -> None:
        model_turns = [t for t in self.turns if t.author == "model"]
        if not model_turns:
            self.say("No model passage yet.")
            return
        provenance = model_turns[-1].provenance
        if not provenance:
            self.say("No sources: the copy guard is off, so the corpus is not consulted.")
            return
        for entry in provenance:
            where = (f"shares {entry['words']} words with {entry['episode']!r}: {entry['span']!r}"
                     if entry.get("span") else "nothing notable in common with the corpus")
            mark = " [let through by the guard]" if entry.get("flagged") else ""
            self.say(f"{entry['sentence'] + 1}. {entry['text']}\n   closest in the corpus: {where}{mark}")

    def _set(self, field: str, arg: str) -> None:
        kind = int if field == "sentences" else float
        try:
            value = kind(arg)
            self.settings = replace(self.settings, **{field: value}).validate()
        except ValueError as exc:  # SettingsError is a ValueError too
            message = str(exc) if isinstance(exc, SettingsError) else f"{field} needs a number, got {arg!r}"
            self.say(f"Not changed: {message}")
            return
        self.say(f"{field} = {value}")

    def loop(self, stream: TextIO) -> None:
        """Read passages and commands until end of input (Ctrl-D)."""
        interactive = stream.isatty()
        if interactive:
            self.say("batplots: write the opening of an episode. /help for commands, Ctrl-D to end.")
        while True:
            try:
                line = input("you> ") if interactive else stream.readline()
            except (EOFError, KeyboardInterrupt):
                break
            if not interactive and line == "":
                break
            self.handle(line)
        if interactive:
            self.say("\nTo the Batcave!")
