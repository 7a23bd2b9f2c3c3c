"""From a corpus file to training and validation token windows.

The held-out split is deterministic and never lets a window straddle it:
- JSONL (what `batplots scrape` writes): whole episodes go to validation,
  max(1, round(fraction * episodes)) of them, spread evenly over the corpus order
  (episode floor((j + 0.5) * n / k) for j < k), so validation samples every season.
- Plain text (the shared corpus is one run-on line): the cleaned episodes are
  joined back into one text and cut at the first sentence boundary at or after
  (1 - fraction) of its characters; the contiguous tail is validation.
Each side is tokenised and packed on its own, so no window mixes the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from batplots.corpus import JSON_SUFFIXES, CorpusError, clean_plot, corpus_sha256, read_corpus
from batplots.text import sentence_spans

# Below these a split says nothing: refuse rather than report a meaningless perplexity.
MIN_TRAIN_WINDOWS = 2
MIN_VAL_TOKENS = 32
MIN_FRACTION, MAX_FRACTION = 0.01, 0.5


@dataclass
class Split:
    """The corpus cut into training and validation text."""

    kind: str  # "jsonl" or "text"
    train: list[str]  # training episodes (plain text: one item)
    val: list[str]
    sha256: str
    episodes: int
    val_titles: list[str]
    revids: list[tuple[str, int]]  # (title, revid) of scraped episodes, for the model card


def is_jsonl(path: Path) -> bool:
    """The same rule read_corpus uses: a JSON suffix or a first character of { or [."""
    if path.suffix.lower() in JSON_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def tail_cut(text: str, fraction: float) -> int:
    """Offset of the first sentence start at or after (1 - fraction) of text; raises when
    no sentence boundary lies in the tail."""
    target = int(len(text) * (1 - fraction))
    spans, _ = sentence_spans(text, final=True)
    for start, _end in spans[1:]:
        if start >= target:
            return start
    raise CorpusError(f"the text is too small for a validation split: no sentence starts in its last "
                      f"{fraction:.0%}, where the held-out tail is cut; give a longer corpus or a larger --val-fraction")


def split_corpus(path: str | Path, fraction: float) -> Split:
    """Read and clean a corpus and split it (see the module docstring). Raises CorpusError."""
    if not MIN_FRACTION <= fraction <= MAX_FRACTION:
        raise CorpusError(f"the validation fraction {fraction} is outside {MIN_FRACTION}-{MAX_FRACTION}")
    path = Path(path)
    episodes = read_corpus(path)
    plots = [clean_plot(ep.plot) for ep in episodes]
    keep = [i for i, p in enumerate(plots) if p]
    if not keep:
        raise CorpusError(f"{path}: no text is left after removing wiki markup")
    sha = corpus_sha256(path)
    revids = [(ep.title, ep.revid) for ep in episodes if ep.revid is not None]
    if is_jsonl(path):
        n = len(keep)
        if n < 2:
            raise CorpusError(f"{path} has {n} episode with text; a JSONL corpus needs at least 2 "
                              "(whole episodes are held out for validation)")
        k = max(1, round(fraction * n))
        val_pos = {math.floor((j + 0.5) * n / k) for j in range(k)}
        val = [keep[j] for j in sorted(val_pos)]
        train = [keep[j] for j in range(n) if j not in val_pos]
        return Split("jsonl", [plots[i] for i in train], [plots[i] for i in val], sha, n,
                     [episodes[i].title for i in val], revids)
    text = "\n".join(plots[i] for i in keep)
    cut = tail_cut(text, fraction)
    return Split("text", [text[:cut].rstrip()], [text[cut:]], sha, len(keep), [], revids)


@dataclass
class Packed:
    """Token streams for each side and the window length."""

    train: torch.Tensor  # 1-D long, episodes joined by EOS
    val: torch.Tensor
    seq_len: int

    @property
    def train_windows(self) -> int:
        return len(self.train) // self.seq_len

    def train_batches(self, epoch: int, batch_size: int, seed: int, shift: bool = True) -> list[torch.Tensor]:
        """The epoch's batches of window start offsets, a pure function of (seed, epoch):
        a resumed run rebuilds exactly the same order. With shift, each epoch after the
        first moves the window grid by a seeded offset within the slack, so the cuts
        differ between epochs; without, the grid stays at 0 (cached windows)."""
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        n = self.train_windows
        slack = len(self.train) - n * self.seq_len
        offset = int(torch.randint(0, slack + 1, (1,), generator=gen)) if epoch and shift else 0
        order = torch.randperm(n, generator=gen)
        starts = offset + order * self.seq_len
        return [starts[i:i + batch_size] for i in range(0, n, batch_size)]

    def grid(self) -> torch.Tensor:
        """All training windows at offset 0, one a row (row i starts at i * seq_len)."""
        n = self.train_windows
        return self.train[:n * self.seq_len].view(n, self.seq_len)

    def windows(self, starts: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.train[s:s + self.seq_len] for s in starts.tolist()])

    def val_batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping validation windows covering every token; the short last window
        is padded and its padding masked out of the labels (-100)."""
        chunks = list(torch.split(self.val, self.seq_len))
        if len(chunks) > 1 and len(chunks[-1]) < 2:
            chunks.pop()  # a 1-token window predicts nothing
        out = []
        for i in range(0, len(chunks), batch_size):
            group = chunks[i:i + batch_size]
            width = max(len(c) for c in group)
            ids = torch.zeros(len(group), width, dtype=torch.long)
            labels = torch.full((len(group), width), -100, dtype=torch.long)
            for row, c in enumerate(group):
                ids[row, :len(c)] = c
                labels[row, :len(c)] = c
            out.append((ids, labels))
        return out


def _stream(tokenizer, texts: list[str]) -> torch.Tensor:
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for i, text in enumerate(texts):
        if i and eos is not None:
            ids.append(eos)  # an episode boundary the model can see
        ids.extend(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    return torch.tensor(ids, dtype=torch.long)


def pack(split: Split, tokenizer, seq_len: int) -> Packed:
    """Tokenise each side on its own and check both are big enough for seq_len."""
    packed = Packed(_stream(tokenizer, split.train), _stream(tokenizer, split.val), seq_len)
    if packed.train_windows < MIN_TRAIN_WINDOWS:
        raise CorpusError(f"the corpus is too small to train on: its training part has {len(packed.train)} tokens, "
                          f"fewer than {MIN_TRAIN_WINDOWS} windows of {seq_len}; give a longer corpus "
                          "or a shorter --seq-len")
    if len(packed.val) < MIN_VAL_TOKENS:
        raise CorpusError(f"the corpus is too small for a validation split: its held-out part has "
                          f"{len(packed.val)} tokens, at least {MIN_VAL_TOKENS} are needed; give a longer corpus "
                          "or a larger --val-fraction")
    return packed
