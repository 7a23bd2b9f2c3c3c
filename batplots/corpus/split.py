"""The held-out split of a corpus, deterministic, never letting a window straddle it:
- JSONL (what `batplots scrape` writes): whole episodes go to validation,
  max(1, round(fraction * episodes)) of them, spread evenly over the corpus order
  (episode floor((j + 0.5) * n / k) for j < k), so validation samples every season.
- Plain text (the shared corpus is one run-on line): the cleaned episodes are
  joined back into one text and cut at the first sentence boundary at or after
  (1 - fraction) of its characters; the contiguous tail is validation.
Training packs each side on its own (batplots.train.dataset); eval reads the same
validation side (batplots.measure.evaluate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from batplots.corpus.episodes import JSON_SUFFIXES, CorpusError, clean_plot, corpus_sha256, read_corpus
from batplots.text import sentence_spans

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
    # Per side, per item of train/val: the (start, end) character spans of its episodes
    # (what conditioned training reads its headers from; a JSONL item is one episode).
    train_spans: list[list[tuple[int, int]]] | None = None
    val_spans: list[list[tuple[int, int]]] | None = None


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
        train_texts, val_texts = [plots[i] for i in train], [plots[i] for i in val]
        return Split("jsonl", train_texts, val_texts, sha, n, [episodes[i].title for i in val], revids,
                     [[(0, len(t))] for t in train_texts], [[(0, len(t))] for t in val_texts])
    text = "\n".join(plots[i] for i in keep)
    cut = tail_cut(text, fraction)
    head = text[:cut].rstrip()
    spans, at = [], 0
    for i in keep:
        spans.append((at, at + len(plots[i])))
        at += len(plots[i]) + 1
    train_spans = [(a, min(b, len(head))) for a, b in spans if a < len(head)]
    val_spans = [(max(a, cut) - cut, b - cut) for a, b in spans if b > cut]
    return Split("text", [head], [text[cut:]], sha, len(keep), [], revids, [train_spans], [val_spans])
