"""A Take: one passage in the making, the Writer's takes raced and ranked.

The takes are decoded together (batplots.story.passage.Passage each, on their own
threads; the llama engine batches them in one decode call a step) and ranked by
batplots.story.ranking.score_take with how much the story explains each
(batplots.story.pmi). A staged passage races its first sentence only, then one take
writes the rest on from the winner (batplots.story.writer says why). Iterate a Take
for its events (str pieces, Rewind), then read `.result`.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator

from batplots.model.engine.base import (MAX_SEED, MIN_NEW_TOKENS, MIN_SEED, Cancelled, Continuation, Rewind,
                                        Settings)
from batplots.story import beats as beatslib
from batplots.story import names as nameslib
from batplots.story.bible import RULES as BIBLE_RULES
from batplots.story.brief import Brief
from batplots.story.passage import Passage
from batplots.story.pmi import take_pmis
from batplots.story.ranking import score_take, story_lead, why

if TYPE_CHECKING:
    from batplots.story.writer import Writer

MIN_TAKES, MAX_TAKES = 1, 8
POLL_SECONDS = 0.1
# Once this many takes have finished, a take that needs more than GRACE times the tokens
# of the last of them is dropped: the slowest take is the longest-winded one, and
# waiting for it would make a ranked turn cost far more than one sample. Counted in
# tokens, not seconds, so that the same seed gives the same passage on any machine.
FINISH_QUORUM = 2
GRACE = 1.1
GRACE_MIN_TOKENS = 6  # and at least this many more: a few words are no sprawl
# Write-on attempts of a staged passage when a near-miss name or a broken rule of the
# show's bible survived every resample.
WRITE_ON_TRIES = 2
WRITE_ON_RETRY = ("near-miss",) + BIBLE_RULES


def take_seeds(seed: int, n: int) -> list[int]:
    """Take 0 keeps the passage's seed (one take is today's passage); the rest derive from it."""
    rng = random.Random(seed ^ 0x5EED)
    return [seed] + [rng.randint(MIN_SEED, MAX_SEED) for _ in range(n - 1)]


class Take:
    """One passage in the making: iterate for events (str pieces, Rewind), then `.result`."""

    def __init__(self, writer: Writer, story: str, settings: Settings, cancel: threading.Event | None, takes: int,
                 tagged: bool = False, brief: Brief = Brief(), staged: bool = True):
        if not MIN_TAKES <= takes <= MAX_TAKES:
            raise ValueError(f"takes must be from {MIN_TAKES} to {MAX_TAKES}, got {takes}")
        self.writer, self.story, self.settings, self.cancel, self.n = writer, story, settings, cancel, takes
        self.tagged = tagged
        self.brief = brief
        self.staged = staged
        self.result: Continuation | None = None
        self.pmi_seconds = 0.0  # what scoring the takes' pmi cost this passage
        self.pmi_recorded = 0  # takes whose log-probabilities after the story came free (not scored)

    def __iter__(self) -> Iterator["str | Rewind"]:
        started = time.perf_counter()
        settings = self.settings
        staged = self.staged and not self.tagged and self.n > 1 and settings.sentences > 1
        first_settings = replace(settings, sentences=1) if staged else settings
        winner, ranked, dropped, first_piece = yield from self._ranked(self.story, first_settings)
        why_line = why(ranked[0], ranked[1:], self.brief.beat)
        if dropped:
            why_line += f" ({dropped} longer take{'s' if dropped > 1 else ''} dropped)"
        if staged and winner.sentences:
            why_line = "first sentence: " + why_line + f"; then {settings.sentences - 1} more written on from it"
            winner = yield from self._write_on(winner, settings)
        if self.brief.beat == "deathtrap" and winner.sentences:
            # The show's cliffhanger closes a deathtrap turn: the narrator's line, not the model's.
            line = beatslib.cliffhanger(self.brief.villains[0] if self.brief.villains else None, settings.seed)
            winner.sentences.append(line)
            winner.text += " " + line
            winner.narrator = line
            yield " " + line
            why_line += "; the narrator's cliffhanger closes the deathtrap"
        if self.writer.guard is not None:
            winner.provenance = self.writer.guard.provenance(winner.sentences, winner.flags)
        winner.candidates = ranked
        winner.why = why_line
        winner.settings = settings  # the passage's seed (the takes' own are in candidates)
        winner.first_piece_seconds = first_piece
        winner.seconds = time.perf_counter() - started
        self.result = winner

    def _write_on(self, first: Continuation, settings: Settings):
        """Stage two of a staged passage: one take writes the remaining sentences after
        the winning first sentence (batch of one: the cheap part)."""
        w = self.writer
        story = self.story + first.text
        seeds = take_seeds(settings.seed, self.n + WRITE_ON_TRIES)[self.n:]
        bible = w.bible(story, self.brief, earlier=self.story)
        for attempt, seed in enumerate(seeds):
            rest = replace(settings, sentences=settings.sentences - 1, seed=seed,
                           max_new_tokens=max(MIN_NEW_TOKENS,
                                              settings.max_new_tokens - w.engine.count_tokens(first.text)))
            rejected: list[dict] = []
            passage = Passage(w.engine, story, rest, self.cancel, w.sentence_check(story, rest, bible, rejected, self.brief),
                              w.guidance(story, replace(self.brief, beat=None), lead=not self._named_lead(first)),
                              self.brief.framer(False))
            for event in passage:
                yield Rewind(first.text + event.text) if isinstance(event, Rewind) else event
            second = passage.result
            # A sentence every attempt of which failed a check was kept as the least bad;
            # a mangled name is worth one more try (the first sentence had k takes).
            if not any(f.get("kind") in WRITE_ON_RETRY for f in second.flags) or attempt == len(seeds) - 1:
                break
            yield Rewind(first.text)
        offset = len(first.sentences)
        copies = [{**f, "sentence": f["sentence"] + offset} for f in second.flags if "kind" not in f]
        return Continuation(text=first.text + second.text, sentences=first.sentences + second.sentences,
                            settings=settings, tokens=first.tokens + second.tokens, prompt_tokens=first.prompt_tokens,
                            trimmed=second.trimmed, truncated_story=first.truncated_story,
                            stop_reason=second.stop_reason, flags=first.flags + copies)

    def _named_lead(self, first: Continuation) -> bool:
        lead = story_lead(self.story, self.writer.lore, self.brief)
        return lead is not None and lead in nameslib.names(first.text)

    def _ranked(self, story: str, settings: Settings):
        """Decode the takes together and rank them; yields take 0's events (every take's,
        tagged, in tagged mode) and a Rewind to the winner; returns (winner, ranked,
        takes dropped, seconds to the first piece)."""
        w = self.writer
        seeds = take_seeds(settings.seed, self.n)
        rejected: list[list[dict]] = [[] for _ in seeds]
        bible = w.bible(story, self.brief)  # the same rules for every take, and for ranking them
        checks = [w.sentence_check(story, settings, bible, rejected[i], self.brief) for i in range(self.n)]
        stops = [threading.Event() for _ in seeds]  # one per take: stragglers stop alone
        events: queue.Queue = queue.Queue()
        outcomes: list = [None] * self.n
        steer = w.guidance(story, self.brief)  # the same for every take; each records its own log-probabilities
        # tokens=[]: each kept sentence's log-probabilities are kept, so PMI scores only the
        # takes' "without the story" half (Passage.story_logprobs)
        guidances = [replace(steer, logprobs=[], tokens=[]) for _ in seeds]
        recorded: list[list[float] | None] = [None] * self.n

        def work(i: int) -> None:
            try:
                passage = Passage(w.engine, story, replace(settings, seed=seeds[i]), stops[i], checks[i],
                                  guidances[i], self.brief.framer())
                for event in passage:
                    if i == 0 or self.tagged:
                        events.put(("event", (i, event)))
                outcomes[i], recorded[i] = passage.result, passage.story_logprobs
            except BaseException as exc:  # noqa: BLE001  (reported below, never lost)
                outcomes[i] = exc
            finally:
                events.put(("finished", i))

        def read_logprobs(i: int) -> list[float]:
            # What the take's sentence loop read (Guidance.tokens), not all the llama scheduler
            # sampled ahead (a count that depends on timing: runs of one seed ranked apart).
            g = guidances[i]
            return [lp for _, lp in g.tokens] if g.tokens else list(g.logprobs or ())

        def tokens(i: int) -> int:
            return len(read_logprobs(i))

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i,), name=f"batplots-take-{i}", daemon=True)
                   for i in range(self.n)]
        for t in threads:
            t.start()
        finished: list[int] = []
        first_piece = None
        limit = None
        try:
            while len(finished) < self.n:
                if self.cancel is not None and self.cancel.is_set():
                    for stop in stops:
                        stop.set()
                if limit is not None:
                    for i in range(self.n):
                        if i not in finished and tokens(i) > limit:
                            stops[i].set()  # ends as Cancelled and is not ranked
                try:
                    kind, value = events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if kind == "finished":
                    finished.append(value)
                    if len(finished) == min(FINISH_QUORUM, self.n) and tokens(value):
                        most = max(tokens(i) for i in finished)
                        limit = max(GRACE * most, most + GRACE_MIN_TOKENS)
                    continue
                take_index, event = value
                if first_piece is None and isinstance(event, str) and event:
                    first_piece = time.perf_counter() - started
                yield value if self.tagged else event
        finally:
            if len(finished) < self.n:  # closed early (a client went away): stop every take
                for stop in stops:
                    stop.set()
            for t in threads:
                t.join()
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        # A straggler may finish between two looks at it: the limit applies after the fact
        # too, so which takes are ranked does not depend on timing.
        done = [(i, r) for i, r in enumerate(outcomes) if isinstance(r, Continuation)
                and (limit is None or i in finished[:FINISH_QUORUM] or tokens(i) <= limit)]
        if not done:
            raise outcomes[0]
        scored = []
        pmis = [None] * len(done)
        if w.pmi_weight is not None and len(done) > 1:  # one take: nothing to rank it against
            tick = time.perf_counter()
            pmis = take_pmis(w.engine, story, settings, self.brief.framer(), [r.text for _, r in done],
                             [recorded[i] for i, _ in done] if w.pmi_from_sampling else None)
            self.pmi_seconds += time.perf_counter() - tick
            self.pmi_recorded += sum(recorded[i] is not None for i, _ in done) if w.pmi_from_sampling else 0
        for (i, result), pmi in zip(done, pmis):
            result.flags = [f for f in result.flags if "kind" not in f]  # flags are copies let through
            parts = score_take(story, result, read_logprobs(i), w.lore, self.brief, bible, pmi,
                               w.pmi_weight or 0.0)
            scored.append({"take": i, "seed": seeds[i], "text": result.text.strip(), **parts,
                           "resampled": rejected[i], "sentences": result.sentences, "flags": result.flags,
                           "stop_reason": result.stop_reason, "tokens": tokens(i)})
        ranked = sorted(scored, key=lambda c: (-c["score"], c["take"]))
        best = ranked[0]
        winner = dict(done)[best["take"]]
        if best["take"] != 0 and not self.tagged:
            yield Rewind(winner.text)  # the first take streamed; another one won
        for c in ranked:
            c["chosen"] = c is best
        return winner, ranked, self.n - len(done), first_piece
