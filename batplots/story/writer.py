"""The Writer: what makes a model passage that follows the story.

A backend only decodes; the Writer decides what a passage is:
- **names stay put**: the writer's own names (the story's names that are not the
  show's stock cast) get a logit bias on their first token, and no story name is
  counted by the repetition penalty, which otherwise pushed the model to other and
  mangled names;
- **sentence checks**: each take is a batplots.story.passage.Passage, whose sentence
  loop resamples a sentence that copies the corpus (the copy guard the Writer holds), brings in a near miss of a known
  name ("Pendum" for "Pendulum") or runs over MAX_SENTENCE_WORDS;
- **ranked takes**: `takes` candidates are decoded together (the llama engine
  batches them in one decode call per step) and the one with the best transparent
  score wins (`score_take`); the first take streams live, and a Rewind replaces it
  with the winner when another one won. A passage of several sentences is staged:
  the takes race for its first sentence (where the story's thread is picked up or
  lost), then one take writes the rest on from the winner, because a step of 4
  sequences costs ~1.8x a step of one on 2 cores (measured) and the first sentence
  is where ranking pays. Alternatives rank whole passages (`tagged`).

The result is a Continuation whose `candidates` list every take's score parts and
whose `why` says why the winner won.
"""

from __future__ import annotations

import queue
import re
import random
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from batplots.story import beats as beatslib
from batplots.story import names as nameslib
from batplots.story import storyread
from batplots.story.beats import BEAT_CUES
from batplots.story.bible import RULES as BIBLE_RULES, Bible
from batplots.story.brief import Brief, brief_for
from batplots.model.engine import EngineSpec
from batplots.model.engine.base import (MAX_SEED, MIN_NEW_TOKENS, MIN_SEED, Cancelled, Continuation, Engine, Guidance,
                                  Rewind, Settings)
from batplots.story.lore import Lore, load_lore
from batplots.story.passage import Passage, SentenceCheck
from batplots.story.pmi import take_pmis
from batplots.story.ranking import MAX_SENTENCE_WORDS, WEIGHT_PMI, score_take, story_lead, why
from batplots.story.steer import Steer

DEFAULT_TAKES = 4
MIN_TAKES, MAX_TAKES = 1, 8
# Logit added to the first token of each of the writer's own names (not the stock cast)
# and of the case file's villains, until the sentence has the name (batplots.story.steer).
NAME_BIAS = 2.5
# The story's lead name (the case file's villain, even when stock cast; else the writer's
# own name the story uses most) gets this too. While the bias was static for a whole
# sentence, +3.5 outweighed the repetition penalty and passages read "Riddler makes
# Riddler's escape from Riddler's Batcave"; now it stops once the name is written.
LEAD_BIAS = NAME_BIAS
# Logit added to the asked-for beat's cue words (beats.BEAT_CUES) at a sentence's start,
# growing with its words (steer.CUE_SLOPE) until the labeller finds the beat; ranking
# (ranking.WEIGHT_BEAT) and BEAT_TRIES do the rest.
BEAT_BIAS = 2.5
# A one-sentence passage (the raced first sentence of a staged passage) that does not play
# the asked-for beat is resampled at most this many times per take, like a near miss.
BEAT_TRIES = 3
# Past this many tokens of a sentence (~18 words), its possible ends get a bias growing
# by END_SLOPE a token: a nudge toward the show's ~24-word sentences, not a cut.
END_AFTER_TOKENS = 24
END_SLOPE = 0.25
# A run of stop marks ("......!!!??") is no sentence of the show's: resampled.
JUNK = re.compile(r"[.!?…]{4,}|[.!?…]\s*[.!?…]\s*[.!?…]\s*[.!?…]")
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


class Writer:
    """Writes passages that follow the story, over any Engine."""

    def __init__(self, engine: Engine, guard=None, lore: Lore | None = None, takes: int = DEFAULT_TAKES,
                 name_bias: float = NAME_BIAS, copy_check: SentenceCheck | None = None, end_slope: float = END_SLOPE,
                 staged: bool = True, conditioned: bool = False, pmi_weight: float | None = WEIGHT_PMI or None):
        self.engine = engine
        # The copy guard (batplots.corpus.guard.CopyGuard): vets sentences, gives provenance.
        self.guard = guard
        self.lore = lore or Lore()
        self.takes = takes
        self.name_bias = name_bias
        self.end_slope = end_slope
        # Rank k takes of the first sentence, then write the rest on from the winner
        # (the module doc says why); False ranks k whole passages.
        self.staged = staged
        # Replaces the guard's check when given (tests script what counts as a copy).
        self.copy_check = copy_check
        # The adapter was trained with control codes (batplots.story.conditioning): prompts get
        # the case file's header and the asked-for beat's marker.
        self.conditioned = conditioned
        # Weight of how much the story explains a take (batplots.story.pmi); None: not
        # scored at all (no cost), 0: scored and shown, not counted.
        self.pmi_weight = pmi_weight
        # The pmi's "with the story" half from the log-probabilities recorded while the takes
        # were sampled, where they are the scored ones (Passage.story_logprobs); False scores
        # both halves (benchmarks/pmi_cost.py compares the two).
        self.pmi_from_sampling = True
        self._cue_cache: dict[str, tuple] = {}

    # --- what steers one take ------------------------------------------------------
    def guidance(self, story: str, brief: Brief = Brief(), lead: bool = True) -> Guidance:
        """Bias toward the writer's own names (the case file's villains too) until the
        sentence has them, the lead name harder the longer it waits (lead=False: not at
        all), and toward the asked-for beat's cue words until it plays the beat
        (batplots.story.steer); exempt every story name from the penalty."""
        story_names = storyread.story_names(story) | brief.names
        own = (story_names - self.lore.cast) | brief.villain_names
        encode = getattr(self.engine, "encode", None)
        guidance = Guidance(logprobs=[], end_tokens=self.engine.sentence_end_tokens(), end_after=END_AFTER_TOKENS,
                            end_slope=self.end_slope)
        if encode is None:
            return guidance
        names: dict[str, tuple[tuple[int, ...], float]] = {}
        unpenalised: set[int] = set()
        lead_word = story_lead(story, self.lore, brief)

        def first_tokens(word: str) -> tuple[int, ...]:
            # The spaced form's first token; the bare form (a sentence's very first word,
            # rare: the model's text starts with a space) only when it is the whole name,
            # not its first letter ("P" of "Pendulum", which would push every P-word).
            spaced, bare = encode(" " + word), encode(word)
            return tuple(dict.fromkeys([*spaced[:1], *(bare if len(bare) == 1 else ())]))

        for name in story_names:
            for form in (" " + name, name):
                unpenalised.update(encode(form))
            if name in own and self.name_bias:
                names[name] = (first_tokens(name), self.name_bias)
        if lead_word and self.name_bias:
            if lead:
                names[lead_word] = (first_tokens(lead_word), max(LEAD_BIAS, names.get(lead_word, ((), 0.0))[1]))
            else:  # the passage's first sentence named the lead: the rest is not pushed to again
                names.pop(lead_word, None)
        named = {t for tokens, _ in names.values() for t in tokens}
        cues, follow = self._cues(brief.beat) if brief.beat else ((), ())
        steer = Steer(names=names, lead=lead_word if lead else None, beat=brief.beat,
                      cues=tuple((w, t) for w, t in cues if t not in named), cue_bias=BEAT_BIAS, follow=follow)
        guidance.unpenalised = frozenset(unpenalised)
        guidance.step_bias = steer if steer else None
        return guidance

    def _cues(self, beat: str) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
        """The beat's one-token cues as (word, token), and (text a longer cue starts with,
        its next token) pairs (beats.BEAT_CUES says why); worked out once a beat."""
        if beat not in self._cue_cache:
            encode = self.engine.encode
            cues: dict[int, str] = {}
            follow: dict[str, int] = {}
            for cue in BEAT_CUES.get(beat, ()):
                for form in (" " + cue, " " + cue.lower(), cue):
                    ids = encode(form)
                    if len(ids) == 1:
                        cues.setdefault(ids[0], cue)
                        continue
                    for j in range(1, len(form)):  # the text of each proper prefix of the tokens
                        start = encode(form[:j])
                        if 0 < len(start) < len(ids) and start == ids[:len(start)]:
                            follow.setdefault(form[:j], ids[len(start)])
            self._cue_cache[beat] = (tuple((w, t) for t, w in cues.items()), tuple(follow.items()))
        return self._cue_cache[beat]

    def bible(self, story: str, brief: Brief = Brief(), earlier: str | None = None) -> Bible:
        """The show's rules for a passage after story (batplots.story.bible): built once a
        passage, shared by its takes' checks and their ranking. earlier: the story before
        this passage, when story has the passage's first sentence already."""
        return Bible(story, self.lore, brief.villains, brief.names, brief.henchmen, brief.writer_names, earlier)

    def sentence_check(self, story: str, settings: Settings, bible: Bible, rejected: list | None = None,
                       brief: Brief = Brief()) -> SentenceCheck:
        """The copy guard, then near-miss names, then the show's bible (its rules for this
        story: identities, villains walking in, unknown Bat-words, he/she, who is caught,
        trapped or away, the model's invented names back again, dangling ends),
        then sprawl, then (for a one-sentence passage with a beat asked for, BEAT_TRIES
        times) the beat; rejections are appended to rejected (what was resampled, for the
        take's notes)."""
        copy_check = self.copy_check
        if copy_check is None and self.guard is not None:
            copy_check = self.guard.sentence_check(settings.copy_limit)
        story_names = storyread.story_names(story) | brief.names
        known = story_names | self.lore.cast
        vocabulary = self.lore.vocabulary | story_names
        beat = brief.beat if settings.sentences == 1 else None
        off_beat = [0]  # resamples spent on the beat so far

        def verdict_for(sentence: str) -> dict | None:
            verdict = copy_check(sentence) if copy_check else None
            if verdict is not None:
                return verdict
            misses = nameslib.near_misses(sentence, known, vocabulary)
            if misses:
                return {"kind": "near-miss", "score": 1, "names": [f"{w} ({n})" for w, n in misses]}
            broken = bible.breaks(sentence)
            if broken:  # the show's bible: resampled like a mangled name
                return {"kind": broken[0].rule, "score": 1, "names": [str(b) for b in broken]}
            if nameslib.words(sentence) > MAX_SENTENCE_WORDS:
                return {"kind": "long", "score": 1, "words": nameslib.words(sentence)}
            if JUNK.search(sentence):
                return {"kind": "junk", "score": 1}
            if beat is not None and off_beat[0] < BEAT_TRIES and beatslib.label(sentence) != beat:
                off_beat[0] += 1
                # Scored below every other rejection: kept before them when all tries fail.
                return {"kind": "off-beat", "score": 0.5, "beat": beatslib.label(sentence)}
            return None

        def check(sentence: str) -> dict | None:
            verdict = verdict_for(sentence)
            if verdict is not None and rejected is not None:
                rejected.append({"kind": verdict.get("kind", "copy"), "sentence": sentence,
                                 **{k: v for k, v in verdict.items() if k in ("names", "words", "score")}})
            return verdict

        return check

    # --- a passage ---------------------------------------------------------------------
    def stream(self, story: str, settings: Settings | None = None, cancel: threading.Event | None = None,
               takes: int | None = None, tagged: bool = False, case: dict | None = None,
               beat: str | None = None, whole: bool = False, writer_text: str | None = None) -> "Take":
        """A passage as a Take: iterate it for pieces and Rewinds, then read .result.
        tagged: every take streams, as (take index, event) pairs (alternatives side by side).
        whole: the takes race for the whole passage, not its first sentence (alternatives
        are whole passages to pick from).
        case: the story's case file (batplots.story.casefile); beat: the next beat asked for
        (batplots.story.beats.BEATS; brief.BriefError names the allowed ones); writer_text:
        the writer's own turns (None: unknown), so that the bible knows the model's names."""
        return Take(self, story, (settings or Settings()).validate().with_seed(), cancel,
                    self.takes if takes is None else takes, tagged,
                    brief_for(case, beat, self.frame(case, beat), writer_text),
                    staged=self.staged and not whole)

    def frame(self, case: dict | None, beat: str | None):
        """The prompt builder for the trained conditioning header (batplots.story.conditioning)
        when the adapter was trained with one; None shows the model the story alone."""
        if not self.conditioned:
            return None
        from batplots.story import conditioning
        from batplots.story.lore import characters_in

        villains = list((case or {}).get("villains") or ())
        lore = self.lore

        def build(story: str, asked: str | None) -> str:
            # As in training: the case's villains, and the recurring cast the story has.
            return conditioning.condition(story, villains, characters_in(story, lore), asked)

        return build

    def run(self, story: str, settings: Settings | None = None, cancel: threading.Event | None = None,
            takes: int | None = None, case: dict | None = None, beat: str | None = None,
            writer_text: str | None = None) -> Continuation:
        take = self.stream(story, settings, cancel, takes, case=case, beat=beat, writer_text=writer_text)
        for _ in take:
            pass
        return take.result


def open_writer(spec: EngineSpec, takes: int | None = None) -> Writer:
    """The Writer every face uses (generate, write, serve, eval, bench): the adapter
    that spec names is resolved once, the engine loaded with it, and the Writer gets
    that adapter's copy guard, lore and conditioning (writer_for). takes None: the named
    base's (bases.Base.takes), else DEFAULT_TAKES. ModelError says what is missing."""
    from batplots.model.engine import load_engine
    from batplots.model.weights import resolve_adapter

    takes = takes_for(spec) if takes is None else takes
    adapter_dir = resolve_adapter(spec.adapter, spec.base)
    engine = load_engine(replace(spec, adapter=str(adapter_dir) if adapter_dir is not None else "none"))
    return writer_for(engine, adapter_dir, takes)


def takes_for(spec: EngineSpec) -> int:
    """The takes a Writer ranks on spec's base: the named base's (bases.Base.takes), else
    DEFAULT_TAKES (a .gguf, a directory, a remote server)."""
    from batplots.model import bases

    named = bases.find(spec.base) if spec.engine != "openai" else None
    return named.takes if named is not None else DEFAULT_TAKES


def writer_for(engine: Engine, adapter_dir: Path | None, takes: int = DEFAULT_TAKES) -> Writer:
    """The Writer over an engine already loaded with adapter_dir (None: the bare base):
    the copy guard over the corpus the adapter was trained on, its lore, and whether it
    was trained with control codes. open_writer is this after loading the engine."""
    from batplots.corpus.guard import guard_for_adapter

    return Writer(engine, guard=guard_for_adapter(adapter_dir), lore=load_lore(adapter_dir), takes=takes,
                  conditioned=adapter_conditioned(adapter_dir))


def adapter_conditioned(adapter_dir: Path | None) -> bool:
    """Whether the adapter was trained with control codes (its training.json says so)."""
    from batplots.corpus.guard import read_training_info

    info = read_training_info(adapter_dir) if adapter_dir is not None else None
    return bool(info and info.get("conditioning"))


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
