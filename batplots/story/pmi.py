"""How much the story explains a take: PMI ranking (the score of context-aware decoding).

    pmi = mean over the take's tokens of  log p(token | the story's prompt)
                                        - log p(token | the prompt without the story)

"Without the story" is the same prompt builder (the conditioning header the adapter
was trained with: the case file's villains, the story's cast, the asked-for beat)
around a neutral one-sentence story, NEUTRAL_STORY. Why:
- the header stays: what it says (the villain's name, the cast, the beat) the ranking
  already rewards (names, beat); PMI is to reward what only the story's own text
  explains (its places, objects, the situation) and to mark down stock text that any
  episode with this villain would get (a take as likely without the story as with it);
- a neutral sentence, not nothing: a take is written after a sentence, with a leading
  space; after a bare header it would be scored as an episode's first words, and takes
  that read like an opening would look "unexplained" for that alone. The show's own
  scene change names only the city every episode is in.

Cost: the "with the story" half comes free. While a take is sampled, the engine records
each token it yields with its log-probability under the model's own logits (before the
Writer's biases, penalty and temperature: Guidance.tokens), and the sentence loop keeps the
kept sentence's (Passage.story_logprobs). Those are the numbers continuation_logprobs gives
for (the take's prompt, the take) whenever the sampled tokens are the text's own tokens
(checked token by token; not so when the model spelled a word in other pieces than the
tokenizer would, cleaning changed the text, or a sentence ended inside a token: then that
take is scored). They differ from a scoring pass only by float sums in another batch shape,
the same noise two scoring passes show (~0.01-0.04 nats a token on the quantised bases).
So only the neutral half is scored: each take's tokens after the short neutral prompt, all
takes in one batch (LlamaEngine.continuation_logprobs); benchmarks/pmi_cost.py measures it.
"""

from __future__ import annotations

from typing import Callable

from batplots.model.engine.base import Engine, Settings
from batplots.story.passage import FRAME_SLACK_TOKENS, fit_story

NEUTRAL_STORY = "Meanwhile, in Gotham City."


def prompts(engine: Engine, story: str, settings: Settings,
            framer: Callable[[str], str] | None) -> tuple[str, str]:
    """(with, without): the prompt a take was written after (as Passage builds it: the
    story fitted to the context, framed) and the same frame around NEUTRAL_STORY."""
    reserve = engine.count_tokens(framer("")) + FRAME_SLACK_TOKENS if framer else 0
    prompt, _ = fit_story(engine, story, settings, reserve)
    return (framer(prompt), framer(NEUTRAL_STORY)) if framer else (prompt, NEUTRAL_STORY)


def take_pmis(engine: Engine, story: str, settings: Settings, framer: Callable[[str], str] | None,
              texts: list[str], recorded: list[list[float] | None] | None = None) -> list[float | None]:
    """Each take's pmi (nats per token), from one scoring call for all of them; None for
    an empty take, and for every take when the engine cannot score. recorded: per take,
    the log-probabilities of its first tokens after the story's prompt as sampled
    (Passage.story_logprobs: all of its tokens, as a rule), or None; only the rest of a
    take is scored after the story (what follows its recorded tokens, which the take's
    cache still holds: a token or two).
    """
    recorded = recorded if recorded is not None else [None] * len(texts)
    with_story, without = prompts(engine, story, settings, framer)
    known: list[list[float]] = []
    pairs: list[tuple[str, str]] = []
    asked: list[int] = []  # the takes whose tail (or whole) is scored after the story
    for k, (text, rec) in enumerate(zip(texts, recorded)):
        tail = _tail(engine, with_story, text, len(rec)) if rec else None
        if rec and tail is None and len(rec) != engine.count_tokens(text):
            rec = None  # the rest cannot be scored apart: score the whole take
        known.append(rec or [])
        if tail is not None or not rec:
            asked.append(k)
            pairs.append(tail if tail is not None else (with_story, text))
    scored = engine.continuation_logprobs(pairs + [(without, t) for t in texts])
    if scored is None:
        return [None] * len(texts)
    after_story = [list(k) for k in known]
    for k, logprobs in zip(asked, scored):
        after_story[k] += logprobs
    return [pmi(a, b) for a, b in zip(after_story, scored[len(asked):])]


def _tail(engine: Engine, context: str, text: str, k: int) -> tuple[str, str] | None:
    """(context and text's first k tokens, the rest of text): a pair whose scoring gives
    exactly the tokens of (context, text) from the k-th on (the same token ids at the same
    places), or None when text is all k tokens or no cut of it tokenises so."""
    encode = getattr(engine, "encode", None)
    ids = encode(text) if encode is not None else []
    if not 0 < k < len(ids):
        return None
    for cut in range(len(text) - 1, 0, -1):  # the recorded part is most of the take
        if encode(text[:cut]) == ids[:k]:
            if encode(text[cut:]) == ids[k:] and encode(context + text[:cut]) == encode(context) + ids[:k]:
                return context + text[:cut], text[cut:]
            return None
    return None


def pmi(with_story: list[float], without: list[float]) -> float | None:
    """Mean per-token log-probability gain from the story (the same tokens both sides)."""
    if not with_story or len(with_story) != len(without):
        return None
    return sum(a - b for a, b in zip(with_story, without)) / len(with_story)
