"""The fast local backend: llama.cpp (through llama-cpp-python) on the shipped GGUF.

The embedded base is already a Q4_1 GGUF, so llama.cpp runs it as shipped; with
an adapter, it runs base and adapter merged into one Q8_0 GGUF, converted once and
cached (gguf_lora says why that form). It is several times faster than the
transformers engine on a laptop CPU (README "Speed").

What makes turns fast besides the kernels (llama_batch has the details):
- continuous batching: up to n_slots generations advance together, one decode
  call per step, instead of queueing one behind another;
- the KV cache of each slot is kept: the next call (the next sentence, or the
  next turn of the same story) only evaluates the tokens after the longest common
  prefix, so a long story does not pay its whole prompt again;
- sampling runs inside llama.cpp (a sampler chain), one C call per token.

Sampling mirrors TransformersEngine.sample: special tokens banned by a logit bias
(the sentence count ends a continuation, not EOS), a CTRL repetition penalty over
the last REPETITION_WINDOW tokens, temperature, top-k, top-p, then a draw seeded
per call (temperature 0 is greedy).
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import ctypes
import os
import queue
import threading
import weakref
from pathlib import Path
from typing import Iterator

import numpy as np

from batplots.model.engine import cpu
from batplots.model.engine.base import MAX_CONTEXT, Cancelled, Engine, EngineError, Guidance, Settings, is_sentence_end
from batplots.model.engine.llama_batch import Request, Scheduler

# The repetition penalty's look-back, as in transformers_engine.REPETITION_WINDOW
# (not imported from there: that would load torch into a server that needs none).
REPETITION_WINDOW = 256
# KV cells shared by all slots: the largest Settings.max_context fits in one story;
# ~180 MB for SmolLM2-135M (f16 K and V, 30 layers x 192 dims); see README "Speed".
DEFAULT_N_CTX = MAX_CONTEXT
# Generations that run (and stories whose caches are kept) at once.
DEFAULT_SLOTS = 16
# Tokens evaluated per llama_decode call (prompt chunks plus one per decoding slot).
N_BATCH = 512
# llama.cpp reads seed 0xFFFFFFFF as "pick a random seed"; ours are reproducible.
_LLAMA_RANDOM_SEED = 0xFFFFFFFF
_PIECE_BUFFER = 64
# How often a waiting generation looks at its cancel event.
CANCEL_POLL_SECONDS = 0.1
# Overrides the thread count (see default_threads).
THREADS_ENV = "BATPLOTS_THREADS"
# More threads than this only add synchronisation for a model this small.
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """Every core up to MAX_DEFAULT_THREADS, or $BATPLOTS_THREADS.

    Measured on the 2-core box (README "Speed"): 2 threads decode ~1.6x faster
    than 1 when nothing else runs. llama.cpp's threads meet at a barrier after
    every operation, so on a machine busy with other work fewer threads can be
    faster: set $BATPLOTS_THREADS there. A 135M model gains nothing past a few."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            from batplots.model.weights import ModelError

            raise ModelError(f"${THREADS_ENV} must be a whole number of threads from 1 up, got {value!r}")
        return int(value)
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_THREADS))


def _quiet_llama_cpp() -> None:
    """llama.cpp logs every load to stderr; keep errors only."""
    from llama_cpp import _logger

    _logger.set_verbose(False)


@contextlib.contextmanager
def _silenced_llama_cpp():
    """Drop every llama.cpp log line for a moment: the LoRA loader says, at no level, for each
    adapted tensor that it cannot use the repacked buffer (harmless: it uses the plain one).
    A real failure still shows: the loader then returns NULL and the caller raises."""
    import logging

    from llama_cpp import _logger

    level = _logger.logger.level
    _logger.logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        _logger.logger.setLevel(level)


class LlamaEngine(Engine):
    name = "llama"

    def __init__(self, gguf_path: Path, lora_path: Path | None = None, label: str = "model",
                 adapter: str | None = None, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None,
                 n_slots: int = DEFAULT_SLOTS, repack: bool | None = None):
        super().__init__()
        import llama_cpp
        from llama_cpp import _internals

        _quiet_llama_cpp()
        self._llama_cpp = llama_cpp
        self.gguf_path = Path(gguf_path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.label = label
        self.adapter = adapter
        self.n_threads = n_threads or default_threads()
        self.n_slots = n_slots
        # Weight repacking (llama.cpp's "extra buffer types"): off where it is known to
        # crash (cpu.default_repack); the self-check decides for the faces.
        self.repack = cpu.default_repack(cpu.cpu_info()["flags"])[0] if repack is None else bool(repack)
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_extra_bufts = self.repack
        self._stack = contextlib.ExitStack()
        try:
            self._model = self._stack.enter_context(contextlib.closing(_internals.LlamaModel(
                path_model=str(self.gguf_path), params=model_params, verbose=False)))
            self._lora = None
            if self.lora_path is not None:
                with _silenced_llama_cpp():  # a line per tensor ("cannot use buft CPU_REPACK"), level-less
                    self._lora = llama_cpp.llama_adapter_lora_init(self._model.model, str(self.lora_path).encode())
                if not self._lora:
                    raise ValueError(f"llama.cpp rejected the LoRA {self.lora_path} (wrong base model?)")
                lora = self._lora
                self._stack.callback(lambda: llama_cpp.llama_adapter_lora_free(lora))
            self._ctx = self._context(n_ctx, n_seq_max=n_slots)
        except (ValueError, RuntimeError) as exc:
            self._stack.close()
            from batplots.model.weights import ModelError

            raise ModelError(f"llama.cpp could not load {self.gguf_path.name}"
                             f"{' with LoRA ' + self.lora_path.name if self.lora_path else ''}: {exc}") from exc
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx.ctx)
        self._vocab = self._model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        # Control and end-of-generation tokens never appear in a story.
        self._banned = [t for t in range(self.n_vocab)
                        if llama_cpp.llama_vocab_is_eog(self._vocab, t) or llama_cpp.llama_vocab_is_control(self._vocab, t)]
        self._pieces: dict[int, bytes] = {}
        self._banned_set = frozenset(self._banned)
        self._sentence_ends: frozenset[int] | None = None
        self.scheduler = Scheduler(self._ctx, self.n_ctx, n_slots, N_BATCH, owner=self)
        # Admits n_slots generations at once (Engine.stream holds it for a whole
        # continuation); they are batched together rather than serialised.
        self.lock = threading.BoundedSemaphore(n_slots)
        # A scheduler thread still inside llama_decode when the interpreter exits kills the
        # process: ggml's C++ static destructors run under it (measured: `batplots write`
        # exited with SIGSEGV in 2 of 6 runs). So the engine closes first, at exit.
        self._at_exit = _close_at_exit(self)

    def _context(self, n_ctx: int, n_seq_max: int):
        """A llama.cpp context on the loaded model (and LoRA), closed with the engine."""
        from llama_cpp import _internals

        llama_cpp = self._llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = n_seq_max
        params.kv_unified = True  # one pool of cells for all slots, used as each story needs
        params.n_threads = params.n_threads_batch = self.n_threads
        ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        if self._lora is not None:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora)
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(ctx.ctx, adapters, 1, scales):
                ctx.close()
                raise ValueError(f"llama.cpp could not apply the LoRA {self.lora_path}")
        return ctx

    def close(self) -> None:
        """Free the model and context now (they are also freed when the engine is dropped)."""
        atexit.unregister(self._at_exit)
        self.scheduler.close()  # first: its thread may be inside llama_decode on these weights
        self._ctx.close()
        self._stack.close()

    def __del__(self):
        # Dropped without close() (a command's last line, sys.exit): the model's weights
        # would be freed under a scheduler step still running (measured: `batplots write`
        # then exited with SIGSEGV in 6 of 6 runs). close() stops that thread first.
        if getattr(self, "_at_exit", None) is not None:
            self.close()

    def describe(self) -> dict:
        return {"engine": self.name, "base": self.label, "adapter": self.adapter, "gguf": self.gguf_path.name,
                "lora": self.lora_path.name if self.lora_path else None, "n_ctx": self.n_ctx,
                "slots": self.n_slots, "threads": self.n_threads, "repack": self.repack}

    # --- tokens ----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (cached; llama-cpp-python's own helper returns
        its whole buffer, NULs included)."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(_PIECE_BUFFER)
            n = self._llama_cpp.llama_token_to_piece(self._vocab, token, buf, _PIECE_BUFFER, 0, False)
            cached = self._pieces[token] = buf.raw[:max(n, 0)]
        return cached

    def reset_cache(self) -> None:
        self.scheduler.reset()

    def sentence_end_tokens(self) -> frozenset[int]:
        if self._sentence_ends is None:
            self._sentence_ends = frozenset(
                t for t in range(self.n_vocab) if t not in self._banned_set
                and is_sentence_end(self.piece(t).decode("utf-8", "replace")))
        return self._sentence_ends

    def cached_tokens(self, slot: int = 0) -> list[int]:
        """The tokens whose keys and values a slot holds now."""
        return self.scheduler.cached_tokens(slot)

    # --- sampling ------------------------------------------------------------------
    def _sampler(self, settings: Settings, seed: int, bias: dict[int, float] | None = None):
        from llama_cpp._internals import LlamaSampler

        sampler = LlamaSampler()
        if self._banned:
            sampler.add_logit_bias(self.n_vocab, {t: float("-inf") for t in self._banned})
        if bias:
            sampler.add_logit_bias(self.n_vocab, bias)
        sampler.add_penalties(n_vocab=self.n_vocab, penalty_last_n=REPETITION_WINDOW,
                              penalty_repeat=float(settings.repetition_penalty), penalty_freq=0.0,
                              penalty_present=0.0)
        if settings.temperature == 0:
            sampler.add_greedy()
            return sampler
        # Same order as TransformersEngine.sample: temperature, top-k, then top-p.
        sampler.add_temp(float(settings.temperature))
        if settings.top_k:
            sampler.add_top_k(int(settings.top_k))
        if settings.top_p < 1.0:
            sampler.add_top_p(float(settings.top_p), 1)
        # Seed 0xFFFFFFFF would mean "random" to llama.cpp; fold it onto 0.
        sampler.add_dist(seed % _LLAMA_RANDOM_SEED)
        return sampler

    def pieces(self, prompt: str, settings: Settings, seed: int,
               cancel: threading.Event | None, guidance: Guidance | None = None) -> Iterator[str]:
        ids = self.encode(prompt)
        if not ids:  # an empty story: start from BOS
            ids = [self._model.token_bos()]
        sampler = self._sampler(settings, seed, guidance.bias if guidance is not None else None)
        # The penalty sees the prompt's recent tokens too, as in the transformers engine,
        # except the story tokens guidance exempts (the writer's names).
        unpenalised = guidance.unpenalised if guidance is not None else frozenset()
        for token in ids[-REPETITION_WINDOW:]:
            if token not in unpenalised:
                sampler.accept(token)
        kept = guidance.tokens if guidance is not None else None
        req = Request(ids=ids, max_new=settings.max_new_tokens, sampler=sampler, cancel=cancel,
                      logprobs=guidance.logprobs if guidance is not None else None,
                      own_logprobs=[] if kept is not None else None)
        if guidance is not None and guidance.end_tokens and guidance.end_slope:
            req.end_set = guidance.end_tokens
            req.end_tokens = np.fromiter(sorted(guidance.end_tokens), dtype=np.int64)
            req.end_bias = guidance.end_bias
        if guidance is not None and guidance.step_bias is not None:
            step_bias, piece = guidance.step_bias, self.piece
            req.step_bias = lambda generated: step_bias(
                b"".join(piece(t) for t in generated).decode("utf-8", "replace"))
        try:
            self.scheduler.submit(req)  # from here on the scheduler owns the sampler
        except BaseException:
            sampler.close()
            raise
        tokens = self._tokens(req, cancel)
        if kept is not None:
            tokens = _recorded(tokens, req.own_logprobs, kept)
        try:
            yield from text_pieces(self.piece(token) for token in tokens)
        finally:
            self.scheduler.release(req)

    def _tokens(self, req: Request, cancel: threading.Event | None) -> Iterator[int]:
        """The request's sampled tokens as the scheduler sends them."""
        for _ in range(req.max_new):
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                try:
                    kind, value = req.out.get(timeout=CANCEL_POLL_SECONDS)
                    break
                except queue.Empty:
                    continue
            if kind == "error":
                raise value
            if kind == "cancelled":
                raise Cancelled()
            if kind == "done":
                return
            yield value

    # --- scoring (quality checks) -----------------------------------------------
    def continuation_logprobs(self, pairs: list[tuple[str, str]]) -> list[list[float]]:
        """Engine.continuation_logprobs, as scoring requests of the scheduler: batched with
        each other (and with running generations), and each reads only what no slot
        holds: after the Writer's takes, the story is cached and a take costs its tokens."""
        reqs = []
        for context, continuation in pairs:
            ids = self.encode(context) or [self._model.token_bos()]
            tail = self.encode(continuation)
            reqs.append(Request(ids=ids + tail, max_new=0, sampler=None, logprobs=[], score_from=len(ids))
                        if tail else None)
        live = [r for r in reqs if r is not None]
        try:
            self.scheduler.submit(*live)  # admitted together: one batch
            for req in live:
                kind, value = req.out.get()  # the scheduler always answers: done or error
                if kind == "error":
                    raise value
        finally:
            for req in live:
                self.scheduler.release(req)
        return [list(r.logprobs) if r is not None else [] for r in reqs]

    def logits(self, ids: list[int]) -> np.ndarray:
        """Next-token logits at every position of ids, shape (len(ids), n_vocab), from
        the same model and LoRA as generation (in a context of its own, so running
        generations are not disturbed)."""
        if not ids or len(ids) > MAX_CONTEXT:
            raise EngineError(f"logits() takes 1 to {MAX_CONTEXT} tokens, got {len(ids)}")
        # llama.cpp runs its threads with OpenMP, one team per calling thread. A second
        # team that outlives its work (this caller's) makes libgomp stop spinning once
        # the teams' threads outnumber the cores, and every decode step after that pays
        # a futex wake per operation: generation ran 2.3x slower for the rest of the
        # process (measured: 79 -> 34 tokens/s on 2 cores). A thread that exits takes its
        # team with it.
        result: dict = {}

        def work():
            try:
                result["logits"] = self._score(ids)
            except BaseException as exc:  # re-raised in the caller
                result["error"] = exc

        thread = threading.Thread(target=work, name="batplots-llama-score")
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["logits"]

    def _score(self, ids: list[int]) -> np.ndarray:
        llama_cpp = self._llama_cpp
        out = np.empty((len(ids), self.n_vocab), dtype=np.float32)
        ctx = self._context(max(len(ids), 64), n_seq_max=1)
        batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        try:
            for start in range(0, len(ids), N_BATCH):
                chunk = ids[start:start + N_BATCH]
                for k, token in enumerate(chunk):
                    batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = token, start + k, 1, 1
                    batch.seq_id[k][0] = 0
                batch.n_tokens = len(chunk)
                if llama_cpp.llama_decode(ctx.ctx, batch) != 0:
                    raise EngineError("llama.cpp failed to score the text")
                out[start:start + len(chunk)] = np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits(ctx.ctx), shape=(len(chunk) * self.n_vocab,)).reshape(-1, self.n_vocab)
        finally:
            llama_cpp.llama_batch_free(batch)
            ctx.close()
        return out


def _close_at_exit(engine: LlamaEngine):
    """Register engine.close to run at interpreter exit, without keeping the engine alive."""
    ref = weakref.ref(engine)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    atexit.register(close)
    return close


def _recorded(tokens: Iterator[int], logprobs: list[float], into: list[tuple[int, float]]) -> Iterator[int]:
    """tokens, each appended to into with its log-probability as it is read (the scheduler
    appends the k-th log-probability before it sends the k-th token)."""
    for k, token in enumerate(tokens):
        into.append((token, logprobs[k]))
        yield token


def text_pieces(byte_pieces: Iterator[bytes]) -> Iterator[str]:
    """One str per token's bytes; a character split across tokens comes out whole
    with the token that completes it (the ones before it give "")."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for piece in byte_pieces:
        yield decoder.decode(piece)


def available() -> bool:
    """Whether llama-cpp-python is installed (the fast engine can load)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def resolve_base(base: str | None) -> tuple[Path, str] | None:
    """(GGUF path, label) for a --base value llama.cpp can run as is: the embedded
    model (no --base), another named base (batplots.model.bases) or a .gguf file; None
    for anything else (a Hugging Face model)."""
    from batplots.model import bases
    from batplots.model import weights as modellib

    named = bases.find(base)
    if named is not None:
        return bases.gguf(named), named.name
    path = Path(base).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise modellib.ModelError(f"--base {base}: no such GGUF file")
        return path, path.stem
    return None


def model_files(base_gguf: Path, adapter_dir: Path | None, adapter_format: str | None = None
                ) -> tuple[Path, Path | None]:
    """(GGUF, LoRA GGUF or None) that llama.cpp loads for a base plus an optional PEFT
    adapter, converted (once, cached) to adapter_format: gguf_lora.DEFAULT_FORMAT
    (merged Q8_0) unless given."""
    from batplots.model.engine import gguf_lora

    if adapter_dir is None:
        return base_gguf, None
    fmt = adapter_format or gguf_lora.DEFAULT_FORMAT
    converted = gguf_lora.ensure_format(adapter_dir, base_gguf, fmt)
    return (base_gguf, converted) if fmt == "lora" else (converted, None)


def load(base_gguf: Path, adapter_dir: Path | None, label: str, n_ctx: int = DEFAULT_N_CTX,
         adapter_format: str | None = None, repack: bool | None = None) -> LlamaEngine:
    """The llama engine for a GGUF base plus an optional PEFT adapter (see model_files)."""
    gguf, lora = model_files(base_gguf, adapter_dir, adapter_format)
    return LlamaEngine(gguf, lora, label=label, adapter=adapter_dir.name if adapter_dir else None, n_ctx=n_ctx,
                       repack=repack)
