"""One sampled passage: the sentence loop over a bare backend.

A backend (batplots.model.engine) only turns a prompt into text pieces. This module makes
those pieces a passage of the story: left-truncating the story to fit the context,
stopping after exactly N complete sentences, trimming back to the last complete
sentence when the token cap is hit, the leading space, and a sentence check (the
Writer's: copy guard, near-miss names, sprawl) through which each finished
sentence must pass or be resampled. The Writer (batplots.story.writer) runs one Passage
per take; nothing else calls backends to write.

A Passage is iterated for its events (text pieces and Rewinds) and then gives its
`.result`, a Continuation; `run` does both for callers that do not stream.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from dataclasses import replace
from typing import Callable, Iterator

from batplots import text as textlib
from batplots.story import storyread
from batplots.model.engine.base import MAX_SEED, MIN_SEED, Continuation, Engine, Guidance, Rewind, Settings

# Vets one finished sentence: None accepts it; a dict says why it was rejected (the
# copy guard's names the copied span) and its "score" ranks rejected candidates.
SentenceCheck = Callable[[str], "dict | None"]

# Rejected sentences are resampled at most this many times, then the best is kept.
MAX_SENTENCE_RETRIES = 4


# Tokens kept free beyond a frame's own count: a header joined to the story may
# tokenise a little differently from the two apart.
FRAME_SLACK_TOKENS = 4
# fit_story counts a window of this many characters a token of budget first (English text
# runs about 4 to a token; a window too short for the budget is doubled until it is not).
WINDOW_CHARS_PER_TOKEN = 6


def fit_story(engine: Engine, story: str, settings: Settings, reserve: int = 0) -> tuple[str, bool]:
    """Left-truncate story at a sentence boundary so it fits the context budget.

    Returns (prompt, truncated). The budget is max_context - max_new_tokens - reserve
    (tokens a frame, the conditioning header, adds). When even the last sentence is
    too long it is cut at a word boundary.

    Only the story's end is counted: a window of WINDOW_CHARS_PER_TOKEN characters a
    token of budget, doubled while it still fits. A suffix longer than one that does not
    fit cannot fit (the search already takes a longer text to have no fewer tokens), so
    the answer lies inside the first window that does not: a 200-passage story costs a
    few counts of a few KB, not a dozen of its 400 KB.
    """
    count = engine.count_tokens
    budget = settings.max_context - settings.max_new_tokens - reserve
    story = story.rstrip()
    cut = max(0, len(story) - max(budget, 1) * WINDOW_CHARS_PER_TOKEN)
    while cut > 0 and count(story[cut:]) <= budget:
        cut = max(0, 2 * cut - len(story))  # the window fits: twice as long
    if cut == 0 and count(story) <= budget:
        return story, False
    read = storyread.split(story)  # sentence_spans(story), resumed from the story this one extends
    spans, rest = read.spans, read.rest
    starts = [a for a, _ in spans] + ([rest] if rest < len(story) else [])
    # Binary search the earliest sentence start (inside the window) whose suffix fits.
    lo, hi = bisect.bisect_left(starts, cut), len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(story[starts[mid]:]) <= budget:
            hi = mid
        else:
            lo = mid + 1
    if lo < len(starts):
        return story[starts[lo]:], True
    words = story[cut:].split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(" ".join(words[mid:])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[lo:]), True


class Passage:
    """A continuation of story in the making: iterate for text pieces (str) and
    Rewinds, then read `.result`. Joined, the pieces (restarting at each Rewind)
    equal result.text. A Passage runs once."""

    def __init__(self, engine: Engine, story: str, settings: Settings | None = None,
                 cancel: threading.Event | None = None, check: SentenceCheck | None = None,
                 guidance: Guidance | None = None, frame: Callable[[str], str] | None = None):
        self.engine, self.story, self.cancel, self.check, self.guidance = engine, story, cancel, check, guidance
        # Builds the model's prompt from the fitted story (the conditioning header); None: the story.
        self.frame = frame
        self.settings = (settings or Settings()).validate().with_seed()
        self.result: Continuation | None = None
        # The log-probability of each of result.text's tokens after the prompt, recorded
        # while sampling (guidance.tokens), when they are what engine.continuation_logprobs
        # would give for (prompt, result.text); else None (story_logprobs says when).
        self.story_logprobs: list[float] | None = None

    def __iter__(self) -> Iterator["str | Rewind"]:
        if self.result is not None:
            raise RuntimeError("a Passage runs once; make a new one")
        settings = self.settings
        started = time.perf_counter()
        reserve = self.engine.count_tokens(self.frame("")) + FRAME_SLACK_TOKENS if self.frame else 0
        prompt, truncated = fit_story(self.engine, self.story, settings, reserve)
        if self.frame is not None:
            prompt = self.frame(prompt)
        prefix = textlib.join_continuation(self.story, "x")[:-1]  # "" or " "
        first_piece = None
        loop = _Loop(self.engine, prompt, prefix, settings, self.cancel, self.check, self.guidance)
        with self.engine.lock:
            for event in loop:
                if first_piece is None and isinstance(event, str) and event:
                    first_piece = time.perf_counter() - started
                yield event
        result = loop.result
        result.first_piece_seconds = first_piece
        result.prompt_tokens = self.engine.count_tokens(prompt)
        result.truncated_story = truncated
        result.seconds = time.perf_counter() - started
        if loop.records is not None:
            self.story_logprobs = story_logprobs(self.engine, prompt, prefix, result.sentences, loop.records)
        self.result = result


def run(engine: Engine, story: str, settings: Settings | None = None, cancel: threading.Event | None = None,
        check: SentenceCheck | None = None, guidance: Guidance | None = None) -> Continuation:
    """A whole passage at once (the non-streaming form of Passage)."""
    return consume(Passage(engine, story, settings, cancel, check, guidance))[1]


def consume(events) -> tuple[str, Continuation]:
    """Iterate a Passage (or a Writer's Take); return (the draft as a client would
    have shown it, its result)."""
    draft = ""
    for event in events:
        draft = event.text if isinstance(event, Rewind) else draft + event
    return draft, events.result


class _Loop:
    """Sentence after sentence, each vetted, until settings.sentences (an iterable
    with a .result, like Passage, minus the timing and the engine's lock)."""

    def __init__(self, engine, prompt, prefix, settings, cancel, check, guidance):
        self.engine, self.prompt, self.prefix, self.settings = engine, prompt, prefix, settings
        self.cancel, self.check, self.guidance = cancel, check, guidance
        self.result: Continuation | None = None
        # Per accepted sentence, the (token, log-probability) pairs its attempt read
        # (guidance.tokens); None when the guidance records none.
        self.records: list[list[tuple[int, float]]] | None = None

    def __iter__(self) -> Iterator["str | Rewind"]:
        settings, prefix, check = self.settings, self.prefix, self.check
        accepted: list[str] = []
        recorded = self.guidance is not None and self.guidance.tokens is not None
        records: list[list[tuple[int, float]]] = []
        flags: list[dict] = []
        total_tokens = 0
        used_tokens = 0  # tokens behind the accepted sentences: they count against the cap
        stop_reason = "sentences"
        trimmed = False
        rng = random.Random(settings.seed)
        attempt_seed = settings.seed
        while len(accepted) < settings.sentences:
            so_far = (prefix + " ".join(accepted)) if accepted else ""
            lead = " " if accepted else prefix
            ctx = self.prompt + (" " + " ".join(accepted) if accepted else "")
            budget = settings.max_new_tokens - used_tokens
            candidates: list[tuple[str, dict | None, int, list]] = []
            status = "cap"
            for _attempt in range(MAX_SENTENCE_RETRIES + 1):
                if budget <= 0:
                    break
                one = _Sentence(self.engine, ctx, lead, budget, settings, attempt_seed, self.cancel, self.guidance)
                read_from = len(self.guidance.tokens) if recorded else 0
                yield from one
                read = self.guidance.tokens[read_from:] if recorded else []
                sentence, status, n_tok, emitted = one.outcome
                total_tokens += n_tok
                attempt_seed = rng.randint(MIN_SEED, MAX_SEED)
                if sentence is None:
                    if emitted:
                        yield Rewind(so_far)  # the cap cut this sentence: take it back
                    break
                verdict = check(sentence) if check else None
                candidates.append((sentence, verdict, n_tok, read))
                if verdict is None:
                    break
                yield Rewind(so_far)  # take the rejected sentence back, then resample
            if not candidates:
                stop_reason = status
                trimmed = status == "cap"
                break
            # Keep the first accepted candidate, or else the one the check scored lowest.
            sentence, verdict, n_tok, read = min(candidates, key=lambda c: -1 if c[1] is None else c[1].get("score", 0))
            used_tokens += n_tok
            if verdict is not None:
                flags.append({"sentence": len(accepted), **verdict, "attempts": len(candidates)})
                yield lead + sentence
            accepted.append(sentence)
            records.append(read)
            if status != "sentences":
                stop_reason = status
                break
        text = (prefix + " ".join(accepted)) if accepted else ""
        self.result = Continuation(text=text, sentences=accepted, settings=settings, tokens=total_tokens,
                                   trimmed=trimmed, stop_reason=stop_reason, flags=flags)
        self.records = records if recorded else None


def story_logprobs(engine: Engine, prompt: str, prefix: str, sentences: list[str],
                   records: list[list[tuple[int, float]]]) -> list[float] | None:
    """The recorded log-probabilities of the first tokens of the text prefix + " ".join(sentences)
    after prompt: of as many of the tokens engine.continuation_logprobs([(prompt, text)])
    scores as line up with the sampled ones (all of them, as a rule); None when none do.

    They are the same numbers (the model's own log-softmax, before any bias) only while
    the tokens line up: a kept sentence's sampled tokens are the text's own tokens (not
    so from where the model spelled a word in other pieces than the tokenizer would,
    cleaning changed the text, or a sentence ended inside a token: ".\n"), and a later
    sentence's prompt (prompt and the sentences before it, tokenised whole) is the
    prompt's tokens and theirs. The rest of the take is scored (batplots.story.pmi)."""
    encode = getattr(engine, "encode", None)
    if encode is None or not sentences or len(records) != len(sentences):
        return None
    base = encode(prompt)
    if not base:  # the engine starts from BOS there: not worth the special case
        return None
    ids: list[int] = []
    logprobs: list[float] = []
    for j, (sentence, read) in enumerate(zip(sentences, records)):
        if j and encode(prompt + " " + " ".join(sentences[:j])) != base + ids:
            break
        own = encode((prefix if j == 0 else " ") + sentence)
        n = _common_prefix([t for t, _ in read], own)
        ids += own[:n]
        logprobs += [lp for _, lp in read[:n]]
        if n < len(own):
            break
    n = _common_prefix(ids, encode(prefix + " ".join(sentences)))
    return logprobs[:n] or None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class _Sentence:
    """Stream one sentence; then `outcome` is (sentence | None, status, tokens, emitted).

    status is "sentences" when the sentence ended, "eos" when the backend stopped
    on its own (the sentence counts if it ended cleanly) and "cap" when the token
    budget ran out first. Text after the sentence's end is never shown. Pieces are
    shown as they come, except a trailing stop mark, which waits until the next
    characters tell whether it ends the sentence ("Mr." or "3." may go on).
    """

    def __init__(self, engine, ctx, lead, budget, settings, seed, cancel, guidance):
        self.engine, self.ctx, self.lead, self.budget = engine, ctx, lead, budget
        self.settings, self.seed, self.cancel, self.guidance = settings, seed, cancel, guidance
        self.outcome: tuple | None = None

    def __iter__(self) -> Iterator[str]:
        lead, budget = self.lead, self.budget
        raw = ""
        shown = 0  # characters of the cleaned body already yielded
        n_tok = 0
        gen = self.engine.pieces(self.ctx, replace(self.settings, max_new_tokens=budget), self.seed, self.cancel,
                                 self.guidance)
        try:
            for piece in gen:
                n_tok += 1
                raw += piece
                body = textlib.sentence_start(textlib.clean_model_text(raw).lstrip())
                spans, _ = textlib.sentence_spans(body, final=False)
                if spans:
                    end = spans[0][1]
                    if end > shown:
                        yield (lead if shown == 0 else "") + body[shown:end]
                    self.outcome = (body[:end], "sentences", n_tok, True)
                    return
                safe = _safe_length(body)
                if safe > shown:
                    yield (lead if shown == 0 else "") + body[shown:safe]
                    shown = safe
        finally:
            gen.close()
        body = textlib.sentence_start(textlib.clean_model_text(raw).strip())
        spans, _ = textlib.sentence_spans(body, final=True)
        if spans and n_tok < budget:
            end = spans[0][1]
            if end > shown:
                yield (lead if shown == 0 else "") + body[shown:end]
            self.outcome = (body[:end], "eos", n_tok, True)
            return
        self.outcome = (None, "cap" if n_tok >= budget else "eos", n_tok, shown > 0)


def _safe_length(body: str) -> int:
    """How much of a growing sentence can be shown now: all but trailing whitespace
    and a trailing stop mark (with its closing quotes) that may yet end the sentence."""
    end = len(body.rstrip())
    k = end
    while k > 0 and (body[k - 1] in textlib.CLOSING_QUOTES or body[k - 1] in textlib.CLOSING_BRACKETS):
        k -= 1
    if k > 0 and body[k - 1] in textlib.TERMINALS:
        while k > 0 and body[k - 1] in textlib.TERMINALS:
            k -= 1
        return k
    return end
