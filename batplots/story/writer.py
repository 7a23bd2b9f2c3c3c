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

import re
import threading
from dataclasses import replace
from pathlib import Path

from batplots.story import beats as beatslib
from batplots.story import names as nameslib
from batplots.story import storyread
from batplots.story.beats import BEAT_CUES
from batplots.story.bible import Bible
from batplots.story.brief import Brief, brief_for
from batplots.model.engine import EngineSpec
from batplots.model.engine.base import Continuation, Engine, Guidance, Settings
from batplots.story.lore import Lore, load_lore
from batplots.story.passage import SentenceCheck
from batplots.story.ranking import MAX_SENTENCE_WORDS, WEIGHT_PMI, story_lead
from batplots.story.steer import Steer
from batplots.story.take import Take

DEFAULT_TAKES = 4
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
