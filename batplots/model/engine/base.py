"""The interface every backend implements, and the types a generation speaks in.

A backend is bare: it tokenises (`count_tokens`, and `encode` where it can), turns a
prompt into a stream of text pieces (`Engine.pieces`), and may score text. What
makes pieces a passage of the story (the sentence loop, checks, takes and ranking)
is the Writer's (batplots.story.passage, batplots.story.writer). Here too: validated Settings,
the Continuation a passage ends as, Rewind events and the Writer's Guidance.
"""

from __future__ import annotations

import random
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable, Iterator

from batplots import text as textlib

# Named limits: the CLI, the web API and the docs all quote these.
MIN_SENTENCES, MAX_SENTENCES = 1, 5
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0
MIN_TOP_P, MAX_TOP_P = 0.01, 1.0
MIN_TOP_K, MAX_TOP_K = 0, 1000
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 1.0, 2.0
MIN_SEED, MAX_SEED = 0, 2**32 - 1
MIN_CONTEXT, MAX_CONTEXT = 64, 8192
MIN_NEW_TOKENS, MAX_NEW_TOKENS = 8, 1024
# The copy guard (batplots.corpus.guard): a sentence sharing this many consecutive words
# with the training corpus is resampled; 0 turns the guard off. Below 4 words
# ordinary phrases ("in the middle of") would count as copies.
DEFAULT_COPY_LIMIT = 8
MIN_COPY_LIMIT, MAX_COPY_LIMIT = 4, 64


class SettingsError(ValueError):
    """A generation setting is out of its allowed range; `field` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


class Cancelled(Exception):
    """Raised inside a generation when its cancel event was set."""


class EngineError(RuntimeError):
    """A backend failed in a way the caller should show to the user (server down, ...)."""


@dataclass(frozen=True)
class Settings:
    """How to write one continuation. Every field is validated by `validate()`."""

    # Complete sentences the model adds before handing the pen back.
    sentences: int = 2
    # Softmax temperature; 0 means greedy (always the likeliest token).
    temperature: float = 0.8
    # Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.
    top_p: float = 0.95
    # Keep only the k likeliest tokens; 0 turns the filter off.
    top_k: int = 50
    # CTRL-style penalty on tokens already in the context; >1 stops the small base model looping.
    repetition_penalty: float = 1.15
    # Same seed + same settings + same story = same text. None draws a fresh seed.
    seed: int | None = None
    # Tokens of story (prompt) plus continuation the model may see; the story is
    # left-truncated at a sentence boundary to fit.
    max_context: int = 1024
    # Token cap for one continuation; past it we trim back to the last complete sentence.
    max_new_tokens: int = 200
    # Consecutive corpus words that make a sentence a copy, to be resampled; 0 = guard off.
    copy_limit: int = DEFAULT_COPY_LIMIT

    def validate(self) -> "Settings":
        """Return self, or raise SettingsError naming the field and its allowed range."""

        def check_range(name, value, lo, hi, kind):
            if isinstance(value, bool) or not isinstance(value, kind):
                raise SettingsError(name, f"{name} must be a {'whole number' if kind is int else 'number'} "
                                          f"from {lo} to {hi}, got {value!r}")
            if not lo <= value <= hi:
                raise SettingsError(name, f"{name} must be from {lo} to {hi}, got {value!r}")

        check_range("sentences", self.sentences, MIN_SENTENCES, MAX_SENTENCES, int)
        check_range("temperature", self.temperature, MIN_TEMPERATURE, MAX_TEMPERATURE, (int, float))
        check_range("top_p", self.top_p, MIN_TOP_P, MAX_TOP_P, (int, float))
        check_range("top_k", self.top_k, MIN_TOP_K, MAX_TOP_K, int)
        check_range("repetition_penalty", self.repetition_penalty, MIN_REPETITION_PENALTY,
                    MAX_REPETITION_PENALTY, (int, float))
        if self.seed is not None:
            check_range("seed", self.seed, MIN_SEED, MAX_SEED, int)
        check_range("max_context", self.max_context, MIN_CONTEXT, MAX_CONTEXT, int)
        check_range("max_new_tokens", self.max_new_tokens, MIN_NEW_TOKENS, MAX_NEW_TOKENS, int)
        if isinstance(self.copy_limit, bool) or not isinstance(self.copy_limit, int) or not (
                self.copy_limit == 0 or MIN_COPY_LIMIT <= self.copy_limit <= MAX_COPY_LIMIT):
            raise SettingsError("copy_limit", f"copy_limit must be 0 (guard off) or a whole number from "
                                              f"{MIN_COPY_LIMIT} to {MAX_COPY_LIMIT}, got {self.copy_limit!r}")
        if self.max_new_tokens > self.max_context // 2:
            raise SettingsError("max_new_tokens", f"max_new_tokens must be at most half of max_context "
                                                  f"({self.max_context // 2}), got {self.max_new_tokens}")
        return self

    def with_seed(self) -> "Settings":
        """A copy with a concrete seed, drawing one when none was given."""
        if self.seed is not None:
            return self
        return replace(self, seed=random.SystemRandom().randint(MIN_SEED, MAX_SEED))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        """Build validated settings from a dict, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(unknown[0], f"unknown setting {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
        return cls(**data).validate()


@dataclass
class Continuation:
    """One finished continuation of a story."""

    text: str  # exactly what to append to the story (leading space included)
    sentences: list[str]  # the complete sentences of text, stripped
    settings: Settings  # the settings used, with the concrete seed
    tokens: int = 0  # tokens the model generated (including any discarded tail)
    prompt_tokens: int = 0  # tokens of story the model saw after truncation
    seconds: float = 0.0
    first_piece_seconds: float | None = None  # time to the first streamed piece
    trimmed: bool = False  # the token cap cut a sentence; text was trimmed back
    truncated_story: bool = False  # the story was left-truncated to fit max_context
    stop_reason: str = "sentences"  # sentences | eos | cap
    flags: list[dict] = field(default_factory=list)  # notes from sentence checks (copy guard)
    # Per sentence, its closest corpus passage (batplots.corpus.guard.provenance); empty without a guard.
    provenance: list[dict] = field(default_factory=list)
    # Every take the Writer ranked (batplots.story.ranking.score_take), best first; and why it won.
    candidates: list[dict] = field(default_factory=list)
    why: str | None = None
    # A line of batplots's own appended to the model's sentences (the narrator's
    # cliffhanger closing a Deathtrap! turn), or None.
    narrator: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["settings"] = self.settings.to_dict()
        return data


@dataclass(frozen=True)
class Rewind:
    """A stream event: the draft streamed so far is replaced by `text`.

    Sent when a streamed sentence is taken back (the token cap cut it, or the copy
    guard rejected it). Clients replace their draft of this continuation with `text`.
    """

    text: str


# The sentence-end nudge stops growing here: a nudge, never a wall.
END_MAX_BIAS = 6.0


@dataclass
class Guidance:
    """Per-request steering toward the story, built by batplots.story.writer.

    Backends that cannot apply a part ignore it (the remote engine)."""

    # Token id -> logit added before sampling (NovelAI's phrase bias, llama.cpp's logit_bias).
    bias: dict[int, float] = field(default_factory=dict)
    # Story tokens the repetition penalty does not count: the CTRL penalty punished the
    # writer's names and pushed the model to mangled ones ("Pendum" for "Pendulum").
    unpenalised: frozenset[int] = frozenset()
    # When a list: each sampled token's log-probability under the model (before bias,
    # penalty and temperature) is appended, for ranking takes.
    logprobs: list[float] | None = None
    # When a list: (token id, its log-probability under the model's own logits, as in
    # logprobs) for each token pieces() yielded a piece for, appended as the piece is
    # yielded (tokens sampled ahead and never read are not). The sentence loop keeps a
    # kept sentence's, so that a take's log-probabilities after the story come free
    # (batplots.story.passage.story_logprobs, batplots.story.pmi).
    tokens: list[tuple[int, float]] | None = None
    # Sentence-ending tokens (engine.sentence_end_tokens) get a bias that grows by
    # end_slope per token once a call has sampled end_after tokens: the small model
    # sprawls into 40-80 word sentences, and each call of pieces() is one sentence.
    end_tokens: frozenset[int] = frozenset()
    end_after: int = 0
    end_slope: float = 0.0
    # Called before each token with the text this call has sampled so far; returns
    # extra logits for the next token (token id -> bias). It lets a bias stop once it
    # has done its work: a beat's cue words until the sentence plays the beat, a name
    # until the sentence has it (a static bias repeats it: "Riddler's ... Riddler's").
    step_bias: Callable[[str], dict[int, float]] | None = None

    def end_bias(self, produced: int) -> float:
        """The bias on sentence ends after `produced` tokens of this call (at most END_MAX_BIAS)."""
        if not self.end_tokens or not self.end_slope or produced < self.end_after:
            return 0.0
        return min(END_MAX_BIAS, self.end_slope * (produced - self.end_after + 1))


def is_sentence_end(piece: str) -> bool:
    """A token's text that ends a sentence and holds nothing else: ".", "!", '?"', " ."."""
    body = piece.strip()
    last = body.rstrip(textlib.CLOSING_QUOTES)[-1:]
    return bool(last) and last in textlib.TERMINALS and all(
        c in textlib.TERMINALS or c in textlib.CLOSING_QUOTES for c in body)


class Engine(ABC):
    """A causal language model that continues stories sentence by sentence."""

    name: str = "engine"
    # Serialises generations: one model, 2 CPU cores; parallel runs only thrash.
    lock: threading.Lock
    # One line when this engine is a fallback (engine.selfcheck: llama.cpp crashed here).
    notice: str | None = None

    def __init__(self) -> None:
        self.lock = threading.Lock()

    # --- what a backend implements -------------------------------------------------
    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens text encodes to (without special tokens)."""

    @abstractmethod
    def pieces(self, prompt: str, settings: Settings, seed: int, cancel: threading.Event | None,
               guidance: Guidance | None = None) -> Iterator[str]:
        """Yield the model's continuation of prompt, one text piece per generated token
        (an empty piece when a token ends inside a UTF-8 character, which is never
        split), for at most settings.max_new_tokens tokens. Local backends suppress
        end-of-text so that the sentence count, not the model, decides the length.
        Sampling follows settings and is reproducible for the same seed. Checks
        cancel between tokens and raises Cancelled when it is set. Closing the
        generator early stops generation. guidance (optional) biases tokens, exempts
        story tokens from the repetition penalty and records log-probabilities."""

    def describe(self) -> dict:
        """What is loaded, for /healthz, --json and model cards."""
        return {"engine": self.name}

    def sentence_end_tokens(self) -> frozenset[int]:
        """Tokens that are only a sentence's end (".", "!\"", "?"...); backends that can
        list their vocabulary override this (the Writer nudges long sentences to end)."""
        return frozenset()

    def continuation_logprobs(self, pairs: list[tuple[str, str]]) -> list[list[float]] | None:
        """For each (context, continuation): the log-probability of each of the
        continuation's tokens after the context, under the model's own logits (no bias,
        penalty or temperature). Context and continuation are tokenised apart, as a
        generation has them (the prompt's tokens, then the sampled ones); an empty context
        starts from BOS. The Writer ranks takes by it (batplots.story.pmi). None: this
        backend cannot score (a remote server)."""
        return None

    def reset_cache(self) -> None:
        """Forget cached prompts (KV caches), so that the next continuation depends only
        on its story, settings and seed. A reused prefix was computed in other batch
        shapes than a fresh one, and float sums in another order can flip a rare
        sampled token; the eval resets before every sample to be reproducible.
        Backends without a cache need not override it."""
