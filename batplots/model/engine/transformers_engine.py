"""The plain PyTorch/transformers backend: any Hugging Face causal LM, on CPU.

It runs its own sampling loop rather than `model.generate` so that it can stream
token by token, honour cancellation between tokens, use a per-call seeded RNG,
and keep the KV cache of the last prompt: the next call (the next sentence, or
the next turn of the same story) only pays for the tokens after the shared prefix.
"""

from __future__ import annotations

import threading
from typing import Iterator

import torch

from batplots.model.engine.base import Cancelled, Engine, Guidance, Settings, is_sentence_end

# The repetition penalty looks at this many most recent tokens, so that a long
# story's names (Batman, Robin, Gotham) are not penalised forever.
REPETITION_WINDOW = 256


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, model, tokenizer, label: str = "model", adapter: str | None = None):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.label = label
        self.adapter = adapter
        # Special tokens (EOS, chat markers) never appear in a story: the sentence
        # count decides where a continuation ends, not the model's EOS.
        self._banned = sorted(set(tokenizer.all_special_ids or []) | (
            {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))
        self._cache = None
        self._cache_ids: list[int] = []

    def describe(self) -> dict:
        return {"engine": self.name, "base": self.label, "adapter": self.adapter}

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def sentence_end_tokens(self) -> frozenset[int]:
        if getattr(self, "_sentence_ends", None) is None:
            banned = set(self._banned)
            self._sentence_ends = frozenset(
                t for t in range(len(self.tokenizer)) if t not in banned
                and is_sentence_end(self.tokenizer.decode([t], clean_up_tokenization_spaces=False)))
        return self._sentence_ends

    def reset_cache(self) -> None:
        with self.lock:
            self._cache, self._cache_ids = None, []

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def continuation_logprobs(self, pairs: list[tuple[str, str]]) -> list[list[float]]:
        """Engine.continuation_logprobs: one forward pass a pair, the generation cache untouched."""
        bos = self.tokenizer.bos_token_id
        out = []
        with self.lock, torch.inference_mode():
            for context, continuation in pairs:
                ids = self.encode(context) or [bos if bos is not None else self.tokenizer.eos_token_id]
                tail = self.encode(continuation)
                if not tail:
                    out.append([])
                    continue
                logits = self.model(input_ids=torch.tensor([ids + tail])).logits[0, len(ids) - 1:-1].float()
                picked = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(tail).unsqueeze(1))
                out.append([float(x) for x in picked[:, 0]])
        return out

    def _prefill(self, ids: list[int]) -> torch.Tensor:
        """Run the prompt through the model, reusing the cached common prefix.

        Returns the logits for the next token."""
        from transformers import DynamicCache

        common = 0
        for a, b in zip(self._cache_ids, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # always feed at least one token for logits
        if self._cache is None or common <= 0:
            self._cache, self._cache_ids, common = DynamicCache(), [], 0
        else:
            # transformers 5 crops by a negative count of tokens to drop.
            drop = len(self._cache_ids) - common
            if drop:
                self._cache.crop(-drop)
            self._cache_ids = self._cache_ids[:common]
        new = torch.tensor([ids[common:]], dtype=torch.long)
        out = self.model(input_ids=new, cache=self._cache, use_cache=True, logits_to_keep=1)
        self._cache_ids.extend(ids[common:])
        return out.logits[0, -1]

    def _step(self, token: int) -> torch.Tensor:
        out = self.model(input_ids=torch.tensor([[token]]), cache=self._cache, use_cache=True, logits_to_keep=1)
        self._cache_ids.append(token)
        return out.logits[0, -1]

    def pieces(self, prompt: str, settings: Settings, seed: int,
               cancel: threading.Event | None, guidance: Guidance | None = None) -> Iterator[str]:
        ids = self.encode(prompt)
        if not ids:  # an empty story: start from BOS (or any token the model knows)
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else self.tokenizer.eos_token_id]
        rng = torch.Generator().manual_seed(seed)
        generated: list[int] = []
        shown = ""
        try:
            with torch.inference_mode():
                logits = self._prefill(ids)
                for _ in range(settings.max_new_tokens):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    context = (ids + generated)[-REPETITION_WINDOW:]
                    if guidance is not None and guidance.unpenalised:
                        # Generated tokens always count; the story's names do not.
                        keep = len(context) - len(generated)
                        context = [t for t in context[:max(keep, 0)] if t not in guidance.unpenalised] + \
                            context[max(keep, 0):]
                    bias = guidance.bias if guidance is not None else None
                    nudge = (guidance.end_bias(len(generated)) if guidance is not None
                             and not (generated and generated[-1] in guidance.end_tokens) else 0.0)
                    if nudge:  # nudge a long sentence to end (Guidance.end_bias)
                        bias = dict(bias or {})
                        for t in guidance.end_tokens:
                            bias[t] = bias.get(t, 0.0) + nudge
                    if guidance is not None and guidance.step_bias is not None:
                        extra = guidance.step_bias(shown)
                        if extra:
                            bias = dict(bias or {})
                            for t, b in extra.items():
                                bias[t] = bias.get(t, 0.0) + b
                    token = sample(logits, context, settings, rng, self._banned, bias)
                    if guidance is not None and (guidance.logprobs is not None or guidance.tokens is not None):
                        logprob = float(torch.log_softmax(logits.float(), dim=-1)[token])
                        if guidance.logprobs is not None:
                            guidance.logprobs.append(logprob)
                        if guidance.tokens is not None:
                            guidance.tokens.append((token, logprob))
                    generated.append(token)
                    text = self.tokenizer.decode(generated, skip_special_tokens=True,
                                                 clean_up_tokenization_spaces=False)
                    if text.endswith("\ufffd"):  # inside a multi-byte character: wait for the rest
                        yield ""
                    else:
                        yield text[len(shown):]
                        shown = text
                    logits = self._step(token)
        except (GeneratorExit, Cancelled):
            raise  # stopped between steps: the cache matches _cache_ids, keep it
        except BaseException:
            # A step that failed inside the model may leave the cache half-updated: drop it.
            self._cache, self._cache_ids = None, []
            raise


def sample(logits: torch.Tensor, context: list[int], settings: Settings, rng: torch.Generator,
           banned: list[int], bias: dict[int, float] | None = None) -> int:
    """Pick the next token: bias, penalise repeats, ban specials, then greedy or top-k/top-p sampling."""
    logits = logits.float().clone()
    if bias:
        ids = torch.tensor(list(bias), dtype=torch.long)
        logits[ids] += torch.tensor(list(bias.values()), dtype=logits.dtype)
    if banned:
        logits[banned] = float("-inf")
    if settings.repetition_penalty != 1.0 and context:
        seen = torch.tensor(sorted(set(context)), dtype=torch.long)
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / settings.repetition_penalty,
                                   values * settings.repetition_penalty)
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / settings.temperature
    if settings.top_k:
        k = min(settings.top_k, logits.numel())
        kth = torch.topk(logits, k).values[-1]
        logits[logits < kth] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Drop tokens once the mass before them already reaches top_p (keep at least one).
        drop = cumulative - sorted_probs >= settings.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=rng))
