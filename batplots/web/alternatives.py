"""Alternatives: the ranked takes of one batch to pick from, refilled where a take failed,
as JSON or streamed take by take."""

from __future__ import annotations

import dataclasses
import random

from batplots.model.engine.base import MAX_SEED, MIN_SEED, Continuation, EngineError, Settings
from batplots.story.writer import Writer
from batplots.text import split_sentences
from batplots.web.errors import error_body
from batplots.web.generation import Busy, Claim, Job, sse
from batplots.web.modelside import ModelUnavailable


def picked_provenance(writer: Writer | None, text: str, settings: Settings) -> list[dict]:
    """Provenance for a picked alternative (the client sends only its text): a sentence
    copying copy_limit or more words is marked as one the guard let through."""
    guard = writer.guard if writer is not None else None
    if guard is None:
        return []
    prov = guard.provenance(split_sentences(text))
    for entry in prov:
        entry["flagged"] = bool(settings.copy_limit) and entry["words"] >= settings.copy_limit
    return prov


# A take that failed (no complete sentence, far longer than the others, the same text as
# another) is written again, in a batch of the missing ones, at most this many times.
REFILL_ROUNDS = 2


class Refills:
    """The takes of an Alternatives request beyond its first batch: while fewer than n
    distinct takes have a sentence, next() starts a batch of the missing ones (fresh
    seeds), and merge() keeps its takes under the indices of those they replace."""

    def __init__(self, n: int, settings: Settings, batch):
        self.n, self.settings, self.batch = n, settings, batch
        self.first: Continuation | None = None
        self.extra: list[dict] = []  # refilled candidates, already given their take index
        self.rounds = 0
        self.missing: list[int] = []

    def kept(self) -> list[dict]:
        return distinct_candidates(self.first.candidates if self.first else []) + self.extra

    def next(self, cont: Continuation | None = None) -> Job | None:
        if cont is not None:
            self.first = cont
        kept = self.kept()
        have = {c["take"] for c in kept}
        self.missing = [i for i in range(self.n) if i not in have]
        if not self.missing or self.rounds >= REFILL_ROUNDS:
            return None
        self.rounds += 1
        seed = self.settings.seed
        fresh = (random.randint(MIN_SEED, MAX_SEED) if seed is None
                 else MIN_SEED + (seed * 1_000_003 + self.rounds) % (MAX_SEED - MIN_SEED))
        return self.batch(len(self.missing), dataclasses.replace(self.settings, seed=fresh))

    def take_of(self, index: int) -> int:
        """The take a refill batch's take `index` stands in for."""
        return self.missing[index] if index < len(self.missing) else self.n + index

    def merge(self, cont: Continuation) -> None:
        seen = {c["text"] for c in self.kept()}
        for c in distinct_candidates(cont.candidates):
            if c["text"] in seen or c["take"] >= len(self.missing):
                continue
            seen.add(c["text"])
            self.extra.append({**c, "take": self.take_of(c["take"]), "chosen": False, "refilled": True,
                               "settings_of": cont.settings})


def distinct_candidates(candidates: list[dict]) -> list[dict]:
    """The candidates with a sentence, each text once (best first, as ranked)."""
    out, seen = [], set()
    for c in candidates:
        if c["text"] and c["text"] not in seen:
            seen.add(c["text"])
            out.append(c)
    return out


def alternatives_body(writer: Writer, cont: Continuation, version: int, extra: list[dict] = ()) -> dict:
    """The distinct takes of a ranked batch, best first, then any written again in place of
    failed ones (`refilled`: not ranked against the first batch); raises when none has a sentence."""
    candidates = []
    for c in distinct_candidates(cont.candidates) + list(extra):
        own = c.get("settings_of", cont.settings)
        candidates.append({"take": c["take"], "text": c["text"], "sentences": c["sentences"], "seed": c["seed"],
                           "settings": dataclasses.replace(own, seed=c["seed"]).to_dict(),
                           "flags": c["flags"], "provenance": picked_provenance(writer, c["text"], own),
                           "score": c["score"], "chosen": c["chosen"], "refilled": bool(c.get("refilled"))})
    if not candidates:
        raise ModelUnavailable("the model wrote no complete sentence in any candidate; try again")
    return {"version": version, "candidates": candidates, "why": cont.why}


async def alternatives_stream(writer: Writer, gen: Job, version: int, claim: Claim, refills: Refills):
    """piece/rewind {take, text} for every take as it is written (a take written again in
    place of a failed one streams under the failed one's index, starting with a rewind to
    ""), then done {version, candidates, why} or error {message}. A client that goes away
    (Stop) cancels every take."""
    job = gen
    try:
        while True:
            result = None
            async for kind, value in job.events():
                if kind in ("piece", "rewind"):
                    take, text = value
                    take = take if job is gen else refills.take_of(take)
                    if take < refills.n:
                        yield sse(kind, {"take": take, "text": text})
                elif kind == "done":
                    result = value
                elif kind == "error":
                    if job is gen:
                        yield sse("error", {"message": f"the model failed: {value}", "status": 500})
                        return
                elif kind == "cancelled":
                    yield sse("error", {"message": "the generation was cancelled", "status": 499})
                    return
            if job is gen:
                if result is None:
                    return
                refills.first = result
            elif result is not None:
                refills.merge(result)
            try:
                extra = refills.next()
            except (Busy, ModelUnavailable, EngineError):
                extra = None  # no second batch now: the takes there are
            if extra is None:
                break
            job = extra
            for take in refills.missing:
                yield sse("rewind", {"take": take, "text": ""})  # written again from the start
        try:
            yield sse("done", alternatives_body(writer, refills.first, version, refills.extra))
        except ModelUnavailable as exc:
            yield sse("error", error_body(exc))
    finally:
        job.cancel.set()  # at once: the inner event generator is only closed when collected
        gen.cancel.set()
        claim.release()
