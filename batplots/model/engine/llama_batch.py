"""Continuous batching for the llama engine: many generations share one llama.cpp
context and advance together, one decode call per step.

Why: a decode step for 16 sequences costs about half of 16 steps for one (the
weights are read once per step; measured 8.7x one step on one thread), so 16
writers get their text sooner than if they queued one behind another, and none
waits for all the others to finish (figures: README "Speed").

Each generation runs in a *slot* (a llama.cpp sequence id) of a unified KV cache
of n_ctx cells shared by all slots. A slot keeps its tokens' keys and values after
its generation ends, so the next request whose prompt starts the same way (the
next sentence, or the next turn of the same story) takes that slot and evaluates
only what is new. Idle slots' caches are evicted, least recently used first, when
a new prompt needs their cells; a request that cannot fit even then waits for
running ones to finish.

Slots share cells: a new request takes the longest prefix cached in ANY slot, busy
or idle, by adding its sequence id to those cells (llama_memory_seq_cp; nothing is
copied). The Writer's takes (k requests with one prompt, submitted together) wait
for the first of them to read the prompt and then share its cells, so a ranked turn
reads the story once instead of k times.

One scheduler thread owns the context. Each step it builds a batch of: one token
per decoding request (the one it sampled last step) and chunks of the prompts
still being read, then decodes and samples a token for every request whose
logits are ready. Callers talk to it through `Request` objects and their queues.
A scoring request (Request.score_from) samples nothing: its tokens are read with
logits kept, and it returns the log-probability of each token after score_from.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from batplots.model.engine.base import EngineError

# The scheduler thread exits after this long without work (it restarts on demand),
# so engines that are dropped do not leave threads behind.
IDLE_EXIT_SECONDS = 2.0
# close() waits this long for a decode step in flight to end before freeing.
CLOSE_JOIN_SECONDS = 30.0
# reset() waits this long for running generations to end.
RESET_WAIT_SECONDS = 30.0
# A pending request waits for a running one to read their common prefix when it would
# then share at least this many more tokens than any slot holds now: shorter, and
# reading them itself costs less than the wait.
SHARE_WAIT_MIN_TOKENS = 16


@dataclass(eq=False)
class Request:
    """One generation: prompt ids in, sampled tokens out through `out`."""

    ids: list[int]
    max_new: int
    sampler: object  # a llama_cpp LlamaSampler; the scheduler frees it when the request ends
    cancel: threading.Event | None = None
    out: queue.Queue = field(default_factory=queue.Queue)  # ("token", id) ... ("done", None) | ("error", exc)
    # When a list: each sampled token's log-probability under the raw logits is appended
    # (before the token is sent, so the consumer sees it with the token).
    logprobs: list[float] | None = None
    # When a list: the same log-probabilities, this request's alone (logprobs may be a list
    # shared by a take's calls): the consumer reads the k-th with the k-th token.
    own_logprobs: list[float] | None = None
    # Sentence ends and the bias on them after k tokens (Guidance.end_bias); None: none.
    end_tokens: np.ndarray | None = None
    end_set: frozenset = frozenset()
    end_bias: object = None  # Callable[[int], float]
    # Extra logits for the next token from the tokens sampled so far (Guidance.step_bias,
    # the engine turns ids into text); None: none.
    step_bias: object = None  # Callable[[list[int]], dict[int, float]]
    generated: list[int] = field(default_factory=list)
    # A scoring request (max_new 0, no sampler): the log-probability of each of
    # ids[score_from:] is appended to logprobs; nothing is sampled. None: a generation.
    score_from: int | None = None
    closed: bool = False  # the consumer went away: drop at the next step
    # scheduler-private
    slot: int = -1
    todo: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated (but the last)
    next_token: int | None = None  # the prompt's last token, then each sampled one: evaluated next
    produced: int = 0
    reused: int = 0  # prompt tokens found in the slot's cache


@dataclass
class Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # evaluated into the KV cache
    busy: Request | None = None
    last_used: float = 0.0
    # Where its cells came from, as (run, start, end) position spans. A run is cells one
    # slot evaluated in a row, keyed (seq, epoch); a copy shares the source's spans, so
    # a cell several slots hold is counted once (_used_cells).
    spans: list[tuple[tuple[int, int], int, int]] = field(default_factory=list)
    epoch: int = 0  # bumped when the slot's cells are cut or replaced: new cells, new run


class Scheduler:
    """Owns the llama.cpp context; `submit` a Request, read its `out` queue."""

    def __init__(self, ctx, n_ctx: int, n_slots: int, n_batch: int, owner):
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.ctx = ctx  # a llama_cpp._internals.LlamaContext made with n_seq_max >= n_slots, kv_unified
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_vocab = owner.n_vocab
        self.slots = [Slot(seq=i) for i in range(n_slots)]
        self._pending: list[Request] = []
        self._active: list[Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._owner = weakref.ref(owner)  # the engine: when it is gone, the thread ends
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.steps = 0  # decode calls made (for tests and the bench)
        self.max_batch_requests = 0  # the most requests decoded together in one step
        # Prompt tokens taken from a slot's cache, and evaluated afresh (KV reuse at work).
        self.prompt_tokens_reused = 0
        self.prompt_tokens_evaluated = 0
        self.decode_seconds = 0.0  # time in llama_decode, and in sampling (for the bench)
        self.sample_seconds = 0.0

    def __del__(self):
        self.close()

    def close(self) -> None:
        """Stop the thread (after its current step) and fail whatever is waiting; the
        context may be freed once this returns."""
        with self._cond:
            self._closing = True
            orphans = self._pending + self._active
            self._pending, self._active = [], []
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_JOIN_SECONDS)
        for req in orphans:
            req.out.put(("error", EngineError("the engine was closed")))
            _close_sampler(req)
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None

    # --- called from the generating threads ----------------------------------
    def submit(self, *reqs: Request) -> None:
        """Queue requests; several given together are admitted in the same step."""
        for req in reqs:
            if len(req.ids) + req.max_new > self.n_ctx:
                raise EngineError(f"the prompt ({len(req.ids)} tokens) plus max_new_tokens ({req.max_new}) exceed "
                                  f"this engine's context of {self.n_ctx} tokens")
        with self._cond:
            if self._closing:
                raise EngineError("the engine was closed")
            self._pending.extend(reqs)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="batplots-llama-batch", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def release(self, req: Request) -> None:
        """The consumer is done with req (finished, cancelled or closed early)."""
        with self._cond:
            req.closed = True
            self._cond.notify_all()

    def reset(self) -> None:
        """Clear the whole KV memory and every slot's tokens, so the next prompt is
        evaluated and placed in the cells as in a fresh engine. Waits (bounded) for
        running requests to end: the context is not touched while a step may run."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._active and not self._pending, timeout=RESET_WAIT_SECONDS):
                raise EngineError(f"cannot reset the cache: generations still running after {RESET_WAIT_SECONDS:.0f} s")
            self._llama_cpp.llama_memory_clear(self.ctx.memory, True)
            for slot in self.slots:
                slot.tokens.clear()
                slot.spans.clear()
                slot.epoch += 1
                slot.last_used = 0.0

    def cached_tokens(self, seq: int) -> list[int]:
        with self._cond:
            return list(self.slots[seq].tokens)

    # --- the scheduler thread ----------------------------------------------------
    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._cond:
                if self._closing:
                    self._thread = None
                    return
                self._drop_finished()
                self._admit()
                if not self._active:
                    self._cond.notify_all()  # reset() waits for an idle scheduler
                    if self._owner() is None:
                        self._thread = None
                        return
                    if not self._pending and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                        self._thread = None
                        return
                    self._cond.wait(timeout=0.5)
                    continue
                work = list(self._active)
            try:
                self._step(work)
            except Exception as exc:  # never leave a caller waiting
                self._fail(work, exc)
            idle_since = time.monotonic()

    def _drop_finished(self) -> None:
        """Free the slots of finished, closed and cancelled requests. Samplers are
        freed here, in the scheduler thread, never while a step may use them."""
        keep = []
        for req in self._active:
            if req.closed or (req.cancel is not None and req.cancel.is_set()):
                slot = self.slots[req.slot]
                slot.busy, slot.last_used = None, time.monotonic()
                if not req.closed:
                    req.out.put(("cancelled", None))
                    req.closed = True
                _close_sampler(req)
            else:
                keep.append(req)
        self._active = keep
        for req in self._pending:
            if req.closed:
                _close_sampler(req)
        self._pending = [r for r in self._pending if not r.closed]

    def _used_cells(self) -> int:
        # Distinct cells: every span of one run starts where the run does (copies take
        # prefixes), so the run's cells are its furthest end minus that start.
        runs: dict[tuple[int, int], tuple[int, int]] = {}
        for slot in self.slots:
            for run, start, end in slot.spans:
                runs[run] = (start, max(end, runs.get(run, (start, end))[1]))
        used = sum(end - start for start, end in runs.values())
        # Running requests will still need cells for their unread prompt and new tokens.
        return used + sum(len(r.todo) + 1 + r.max_new - r.produced for r in self._active)

    def _should_wait(self, req: Request, cached: int) -> bool:
        """Whether a running request still reading its prompt will soon hold a prefix of
        req's much longer than any slot's now. Bounded: the reader leaves _active when
        it is read, cancelled, closed or fails, and then req is admitted as usual."""
        for reader in self._active:
            if reader.todo:
                # The reader holds all of its prompt but the last token once todo is empty.
                shared = min(_common_prefix(reader.ids, req.ids), len(reader.ids) - 1, len(req.ids) - 1)
                if shared >= cached + SHARE_WAIT_MIN_TOKENS:
                    return True
        return False

    def _admit(self) -> None:
        # FIFO, except that requests waiting for a reader (_should_wait) let the ones
        # behind them in; one that does not fit the cache stops the queue, as before.
        for req in list(self._pending):
            free = [s for s in self.slots if s.busy is None]
            if not free:
                return
            # The prompt's last token is always decoded (see below): never reuse it. A scoring
            # request needs the logits of every token before the ones it scores.
            last = len(req.ids) - 1 if req.score_from is None else req.score_from - 1
            prefix = {s.seq: min(_common_prefix(s.tokens, req.ids), last) for s in self.slots}
            common = max(prefix.values())
            if self._should_wait(req, common):
                continue
            src = max(self.slots, key=lambda s: (prefix[s.seq], s.busy is None))
            # The free slot sharing the longest prefix with the prompt; ties: least recently used.
            best = max(free, key=lambda s: (prefix[s.seq], -s.last_used))
            empty = [s for s in free if not s.tokens]
            if prefix[best.seq] < common or (len(best.tokens) > common and empty):
                # Another slot holds a longer prefix (a busy one), or taking the best one
                # would cut its cache short: share the prefix's cells with a slot whose
                # cache is empty, else the least recently used one.
                best = empty[0] if empty else min(free, key=lambda s: s.last_used)
                self._trim(best, 0)  # one cell per position: none of its own may stay
                self._share(src, best, common)
            need = (len(req.ids) - common) + req.max_new
            self._trim(best, common)
            # Evict idle caches, oldest first, until the prompt and its new tokens fit.
            for victim in sorted((s for s in free if s is not best and s.tokens), key=lambda s: s.last_used):
                if self.n_ctx - self._used_cells() >= need:
                    break
                self._trim(victim, 0)
            if self.n_ctx - self._used_cells() < need:
                # Running requests hold the cells (submit() made sure the prompt fits an
                # empty cache): wait for them to finish.
                return
            self._pending.remove(req)
            req.slot, req.reused = best.seq, common
            self.prompt_tokens_reused += common
            self.prompt_tokens_evaluated += len(req.ids) - common
            # The prompt's last token is decoded alone, like a generated one, so that its
            # logits do not depend on how much of the prompt was cached (llama.cpp's
            # kernels sum in a different order for different batch sizes): same seed,
            # same story, same text, warm or cold.
            req.todo = list(req.ids[common:-1])
            # A scoring request's last token is never evaluated: nothing follows it.
            req.next_token = req.ids[-1] if req.score_from is None else None
            best.busy = req
            self._active.append(req)

    def _trim(self, slot: Slot, keep: int) -> None:
        """Drop the slot's cells from position keep on (cells other slots share stay)."""
        if len(slot.tokens) > keep:
            self._llama_cpp.llama_memory_seq_rm(self.ctx.memory, slot.seq, keep, -1)
            del slot.tokens[keep:]
            slot.spans = [(run, start, min(end, keep)) for run, start, end in slot.spans if start < keep]
            slot.epoch += 1

    def _share(self, src: Slot, dst: Slot, n: int) -> None:
        """Give dst (empty) src's first n cells: positions 0..n-1, as dst needs them."""
        if n <= 0:
            return
        self._llama_cpp.llama_memory_seq_cp(self.ctx.memory, src.seq, dst.seq, 0, n)
        dst.tokens = src.tokens[:n]
        dst.spans = [(run, start, min(end, n)) for run, start, end in src.spans if start < n]
        dst.epoch += 1

    def _extend(self, slot: Slot, tokens: list[int]) -> None:
        start, end = len(slot.tokens), len(slot.tokens) + len(tokens)
        slot.tokens.extend(tokens)
        run = (slot.seq, slot.epoch)
        if slot.spans and slot.spans[-1][0] == run:
            slot.spans[-1] = (run, slot.spans[-1][1], end)
        else:
            slot.spans.append((run, start, end))

    def _step(self, work: list[Request]) -> None:
        # Decoding requests first (one token each), then prompt chunks in the room left.
        entries = []  # (request, tokens, wants_logits)
        room = self.n_batch
        for req in work:
            if req.next_token is not None and not req.todo:
                entries.append((req, [req.next_token], True))
                room -= 1
        for req in work:
            if req.todo and room > 0:
                chunk = req.todo[:room]
                entries.append((req, chunk, False))
                room -= len(chunk)
        if not entries:
            return
        batch = self._batch
        n = 0
        logits_at = {}
        scored = []  # (request, batch index, the token whose log-probability it gives)
        for req, tokens, wants in entries:
            start = len(self.slots[req.slot].tokens)
            for k, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = start + k
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = req.slot
                scores = req.score_from is not None and start + k >= req.score_from - 1
                batch.logits[n] = 1 if (wants and k == len(tokens) - 1) or scores else 0
                if scores:
                    scored.append((req, n, req.ids[start + k + 1]))
                n += 1
            if wants:
                logits_at[id(req)] = n - 1
        batch.n_tokens = n
        started = time.perf_counter()
        rc = self._llama_cpp.llama_decode(self.ctx.ctx, batch)
        if rc == 1:  # no room in the KV cache: evict every idle cache and try once more
            with self._cond:
                for slot in self.slots:
                    if slot.busy is None:
                        self._trim(slot, 0)
            rc = self._llama_cpp.llama_decode(self.ctx.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama.cpp failed to decode a batch of {n} tokens (code {rc})")
        self.steps += 1
        sampled = time.perf_counter()
        self.decode_seconds += sampled - started
        self.max_batch_requests = max(self.max_batch_requests, len(logits_at))
        for req, index, token in scored:
            req.logprobs.append(self._logprob(index, token))
        for req, tokens, wants in entries:
            slot = self.slots[req.slot]
            self._extend(slot, tokens)
            if not wants:
                del req.todo[:len(tokens)]
                if req.score_from is not None and not req.todo:  # scored: done
                    req.out.put(("done", None))
                    req.closed = True
                continue
            req.next_token = None
            if req.closed:
                continue
            index = logits_at[id(req)]
            # Not right after a sentence end: the nudge would only stack "..." marks.
            bias = (req.end_bias(req.produced) if req.end_bias is not None and tokens[-1] not in req.end_set
                    else 0.0)
            extra = req.step_bias(req.generated) if req.step_bias is not None else None
            records = req.logprobs is not None or req.own_logprobs is not None
            raw_lse = self._logsumexp(index) if ((bias or extra) and records) else None
            row = self._row(index)  # the sampler reads this row next
            if bias:  # nudge a long sentence to end
                row[req.end_tokens] += bias
            for t, b in (extra or {}).items():
                row[t] += b
            token = req.sampler.sample(self.ctx, index)  # also accepts it into the penalty window
            if records:
                if raw_lse is None:
                    logprob = self._logprob(index, token)
                else:  # under the model's own logits, before the nudges
                    raw = float(row[token]) - (bias if token in req.end_set else 0.0) - (extra or {}).get(token, 0.0)
                    logprob = raw - raw_lse
                for sink in (req.logprobs, req.own_logprobs):
                    if sink is not None:
                        sink.append(logprob)
            req.produced += 1
            if req.step_bias is not None:
                req.generated.append(token)
            req.out.put(("token", token))
            if req.produced >= req.max_new:
                req.out.put(("done", None))
                req.closed = True  # the last token need not be evaluated
            else:
                req.next_token = token
        self.sample_seconds += time.perf_counter() - sampled

    def _row(self, index: int) -> np.ndarray:
        """The logits of batch entry index, in llama.cpp's own buffer (writable)."""
        return np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(self.ctx.ctx, index), shape=(self.n_vocab,))

    def _logsumexp(self, index: int) -> float:
        row = self._row(index)
        top = float(row.max())
        return top + math.log(float(np.exp(row - top).sum()))

    def _logprob(self, index: int, token: int) -> float:
        """log p(token) from the logits row of batch entry index (~0.1 ms for 49k entries)."""
        return float(self._row(index)[token]) - self._logsumexp(index)

    def _fail(self, work: list[Request], exc: Exception) -> None:
        error = exc if isinstance(exc, EngineError) else EngineError(f"llama.cpp failed: {exc}")
        with self._cond:
            for req in work:
                slot = self.slots[req.slot]
                self._trim(slot, 0)  # its cache may be half-written
                slot.busy = None
                req.closed = True
                req.out.put(("error", error))
                _close_sampler(req)
            self._active = [r for r in self._active if r not in work]


def _close_sampler(req: Request) -> None:
    if req.sampler is not None:
        req.sampler.close()
        req.sampler = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
