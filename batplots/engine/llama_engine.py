"""The fast local backend: llama.cpp (through llama-cpp-python) on the shipped GGUF.

The embedded base is already a Q4_1 GGUF, so llama.cpp runs it as shipped, with
the adapter applied at run time as a GGUF LoRA (see gguf_lora for why). It is
several times faster than the transformers engine on a laptop CPU (README "Speed").

Two things make turns fast besides the kernels:
- the KV cache of the last prompt is kept: the next call (the next sentence, or
  the next turn of the same story) only evaluates the tokens after the longest
  common prefix, so a long story does not pay its whole prompt again;
- sampling runs inside llama.cpp (a sampler chain), one C call per token.

Sampling mirrors TransformersEngine.sample: special tokens banned by a logit bias
(the sentence count ends a continuation, not EOS), a CTRL repetition penalty over
the last REPETITION_WINDOW tokens, temperature, top-k, top-p, then a draw seeded
per call (temperature 0 is greedy).
"""

from __future__ import annotations

import codecs
import ctypes
import os
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from batplots.engine.base import MAX_CONTEXT, Cancelled, Engine, EngineError, Settings

# The repetition penalty's look-back, as in transformers_engine.REPETITION_WINDOW
# (not imported from there: that would load torch into a server that needs none).
REPETITION_WINDOW = 256

# KV cache size in tokens: covers the largest Settings.max_context, and costs
# ~190 MB for SmolLM2-135M (f16 K and V, 30 layers x 192 dims); see README "Speed".
DEFAULT_N_CTX = MAX_CONTEXT
# Prompt tokens evaluated per llama_decode call.
N_BATCH = 512
# llama.cpp reads seed 0xFFFFFFFF as "pick a random seed"; ours are reproducible.
_LLAMA_RANDOM_SEED = 0xFFFFFFFF
_PIECE_BUFFER = 64
# Overrides the thread count (see default_threads).
THREADS_ENV = "BATPLOTS_THREADS"


def default_threads() -> int:
    """Half the cores (at least 1), or $BATPLOTS_THREADS.

    llama.cpp's threads spin at a barrier after every layer; when another process
    takes a core, all of them wait. A 135M model gains little from a second thread,
    and loses a lot when it must share (README "Speed" has the figures)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            from batplots.model import ModelError

            raise ModelError(f"${THREADS_ENV} must be a whole number of threads from 1 up, got {value!r}")
        return int(value)
    return max(1, (os.cpu_count() or 2) // 2)


class LlamaEngine(Engine):
    name = "llama"

    def __init__(self, gguf_path: Path, lora_path: Path | None = None, label: str = "model",
                 adapter: str | None = None, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None):
        super().__init__()
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.gguf_path = Path(gguf_path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.label = label
        self.adapter = adapter
        self.n_threads = n_threads or default_threads()
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.gguf_path), lora_path=str(self.lora_path) if self.lora_path else None,
                n_ctx=n_ctx, n_batch=N_BATCH, n_threads=self.n_threads, n_threads_batch=self.n_threads,
                logits_all=False, verbose=False)
        except (ValueError, RuntimeError) as exc:
            from batplots.model import ModelError

            raise ModelError(f"llama.cpp could not load {self.gguf_path.name}"
                             f"{' with LoRA ' + self.lora_path.name if self.lora_path else ''}: {exc}") from exc
        self.n_ctx = self.llm.n_ctx()
        self._vocab = self.llm._model.vocab
        n_vocab = self.llm.n_vocab()
        # Control and end-of-generation tokens never appear in a story.
        self._banned = [t for t in range(n_vocab)
                        if llama_cpp.llama_vocab_is_eog(self._vocab, t) or llama_cpp.llama_vocab_is_control(self._vocab, t)]
        self._pieces: dict[int, bytes] = {}
        self._state_lock = threading.Lock()  # guards the KV cache for callers outside engine.lock

    def describe(self) -> dict:
        return {"engine": self.name, "base": self.label, "adapter": self.adapter, "gguf": self.gguf_path.name,
                "lora": self.lora_path.name if self.lora_path else None, "n_ctx": self.n_ctx,
                "threads": self.n_threads}

    # --- tokens ----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

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

    # --- the KV cache ------------------------------------------------------------
    @property
    def cached_tokens(self) -> list[int]:
        """The tokens whose keys and values are in the cache now."""
        return self.llm._input_ids.tolist()

    def _prefill(self, ids: list[int]) -> int:
        """Evaluate ids, reusing the cached common prefix; returns how many tokens were
        reused. At least one token is evaluated, so the logits are fresh."""
        if len(ids) > self.n_ctx:
            raise EngineError(f"the prompt is {len(ids)} tokens; this engine holds at most {self.n_ctx}")
        cached = self.llm._input_ids
        common = 0
        limit = min(len(cached), len(ids) - 1)
        while common < limit and cached[common] == ids[common]:
            common += 1
        self.llm.n_tokens = common  # eval() drops the cache past n_tokens first
        self.llm.eval(ids[common:])
        return common

    def reset_cache(self) -> None:
        self.llm.reset()
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)

    # --- sampling ------------------------------------------------------------------
    def _sampler(self, settings: Settings, seed: int):
        from llama_cpp._internals import LlamaSampler

        sampler = LlamaSampler()
        if self._banned:
            sampler.add_logit_bias(self.llm.n_vocab(), {t: float("-inf") for t in self._banned})
        sampler.add_penalties(n_vocab=self.llm.n_vocab(), penalty_last_n=REPETITION_WINDOW,
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
               cancel: threading.Event | None) -> Iterator[str]:
        ids = self.encode(prompt)
        if not ids:  # an empty story: start from BOS
            ids = [self.llm.token_bos()]
        if len(ids) + settings.max_new_tokens > self.n_ctx:
            raise EngineError(f"prompt ({len(ids)} tokens) plus max_new_tokens ({settings.max_new_tokens}) "
                              f"exceed this engine's context of {self.n_ctx} tokens")
        with self._state_lock:
            sampler = self._sampler(settings, seed)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                # The penalty sees the prompt's recent tokens too, as in the transformers engine.
                for token in ids[-REPETITION_WINDOW:]:
                    sampler.accept(token)
                self._prefill(ids)
                for _ in range(settings.max_new_tokens):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    token = sampler.sample(self.llm._ctx, -1)  # also accepts it into the penalty window
                    # The incremental decoder holds back an unfinished UTF-8 character.
                    yield decoder.decode(self.piece(token))
                    self.llm.eval([token])
            except (GeneratorExit, Cancelled):
                raise  # stopped between tokens: the cache is consistent, keep it
            except BaseException:
                self.reset_cache()  # a failed decode may leave the cache half-updated
                raise
            finally:
                sampler.close()

    # --- scoring (quality checks) -----------------------------------------------
    def logits(self, ids: list[int]) -> np.ndarray:
        """Next-token logits at every position of ids, shape (len(ids), n_vocab).

        Runs through the same context (and LoRA) as generation, asking llama.cpp for
        every position's logits batch by batch; the cache then holds ids."""
        if not ids or len(ids) > self.n_ctx:
            raise EngineError(f"logits() takes 1 to {self.n_ctx} tokens, got {len(ids)}")
        n_vocab = self.llm.n_vocab()
        out = np.empty((len(ids), n_vocab), dtype=np.float32)
        with self.lock, self._state_lock:
            self.reset_cache()
            for start in range(0, len(ids), N_BATCH):
                chunk = ids[start:start + N_BATCH]
                self.llm._batch.set_batch(batch=chunk, n_past=start, logits_all=True)
                self.llm._ctx.decode(self.llm._batch)
                out[start:start + len(chunk)] = np.ctypeslib.as_array(
                    self.llm._ctx.get_logits(), shape=(len(chunk) * n_vocab,)).reshape(len(chunk), n_vocab)
                self.llm.input_ids[start:start + len(chunk)] = chunk
                self.llm.n_tokens = start + len(chunk)
        return out


def available() -> bool:
    """Whether llama-cpp-python is installed (the fast engine can load)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def resolve_base(base: str | None) -> tuple[Path, str] | None:
    """(GGUF path, label) for a --base value llama.cpp can run as is: the embedded
    model (no --base) or a .gguf file; None for anything else (a Hugging Face model)."""
    from batplots import model as modellib

    if base is None or base.strip().lower() in modellib.EMBEDDED_ALIASES:
        return modellib.embedded_gguf(), modellib.EMBEDDED_NAME
    path = Path(base).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise modellib.ModelError(f"--base {base}: no such GGUF file")
        return path, path.stem
    return None


def load(base_gguf: Path, adapter_dir: Path | None, label: str, n_ctx: int = DEFAULT_N_CTX) -> LlamaEngine:
    """The llama engine for a GGUF base plus an optional PEFT adapter (converted and cached)."""
    from batplots.engine import gguf_lora

    lora = gguf_lora.ensure_gguf_lora(adapter_dir, base_gguf) if adapter_dir is not None else None
    return LlamaEngine(base_gguf, lora, label=label, adapter=adapter_dir.name if adapter_dir else None, n_ctx=n_ctx)
