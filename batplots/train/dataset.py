"""From a corpus file to training and validation token windows.

The held-out split is batplots.corpus.split's. Each side is tokenised and packed on
its own, so no window mixes the two.

With conditioning (`--header`), Codes annotate each side's stream with its episodes
and sentences, and a seeded share of the training windows gets the episode's header
and beat markers (batplots.story.conditioning) on top of its tokens, masked out of the loss.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

import torch

from batplots.corpus.episodes import CorpusError, read_corpus
from batplots.corpus.split import Split
from batplots.text import sentence_spans

# Below these a split says nothing: refuse rather than report a meaningless perplexity.
MIN_TRAIN_WINDOWS = 2
MIN_VAL_TOKENS = 32


@dataclass
class Packed:
    """Token streams for each side and the window length."""

    train: torch.Tensor  # 1-D long, episodes joined by EOS
    val: torch.Tensor
    seq_len: int
    # With conditioned training: the control codes of each side (Codes, below).
    cond: "Codes | None" = None
    val_cond: "Codes | None" = None

    @property
    def train_windows(self) -> int:
        return len(self.train) // self.seq_len

    @property
    def extra_windows(self) -> int:
        """Coded copies an epoch adds on top of the plain windows (Conditioning.extra)."""
        if self.cond is None or not self.cond.extra:
            return 0
        return round(self.cond.header_share * self.train_windows)

    @property
    def epoch_windows(self) -> int:
        return self.train_windows + self.extra_windows

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
        if self.extra_windows:
            # Extra coded copies of some windows, on top of every plain one: a start s is
            # sent as -(s + 1) (windows() codes it); then the whole epoch is shuffled.
            copies = -(starts[torch.randperm(n, generator=gen)[:self.extra_windows]] + 1)
            both = torch.cat([starts, copies])
            starts = both[torch.randperm(len(both), generator=gen)]
        return [starts[i:i + batch_size] for i in range(0, len(starts), batch_size)]

    def grid(self) -> torch.Tensor:
        """All training windows at offset 0, one a row (row i starts at i * seq_len)."""
        n = self.train_windows
        return self.train[:n * self.seq_len].view(n, self.seq_len)

    def windows(self, starts: torch.Tensor, epoch: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of the windows at starts. Plain windows are their own labels;
        with conditioning, a seeded share of them (a pure function of seed, epoch and
        start) gets its header and beat markers, masked out of the labels (-100), and is
        longer (Codes.window); the rows are padded at the end with unscored tokens."""
        if self.cond is None:
            x = torch.stack([self.train[s:s + self.seq_len] for s in starts.tolist()])
            return x, x
        # With extra copies, a window is coded exactly when sent as one (-(start + 1), see
        # train_batches); otherwise the share decides (coded=None).
        rows = [self.cond.window(self.train, -s - 1 if s < 0 else s, self.seq_len, seed, epoch,
                                 coded=(s < 0) if self.cond.extra else None) for s in starts.tolist()]
        width = max(len(x) for x, _ in rows)  # coded windows are longer: pad at the end, unscored
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for row, (x, y) in enumerate(rows):
            ids[row, :len(x)], labels[row, :len(y)] = x, y
        return ids, labels

    def val_batches(self, batch_size: int, codes: str = "") -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping validation windows covering every token; the short last window
        is padded and its padding masked out of the labels (-100). codes "header" puts each
        window's header before it (and at each episode start inside it), "beats" also a
        marker before every sentence that plays a beat; either way the same tokens are
        scored, so the perplexities compare."""
        bounds = list(range(0, len(self.val), self.seq_len))
        if len(bounds) > 1 and len(self.val) - bounds[-1] < 2:
            bounds.pop()  # a 1-token window predicts nothing
        ends = bounds[1:] + [len(self.val)]
        rows = []
        for a, b in zip(bounds, ends):
            if codes and self.val_cond is not None:
                rows.append(self.val_cond.scored(self.val, a, b, markers=codes == "beats"))
            else:
                rows.append((self.val[a:b], self.val[a:b]))
        out = []
        for i in range(0, len(rows), batch_size):
            group = rows[i:i + batch_size]
            width = max(len(x) for x, _ in group)
            ids = torch.zeros(len(group), width, dtype=torch.long)
            labels = torch.full((len(group), width), -100, dtype=torch.long)
            for row, (x, y) in enumerate(group):
                ids[row, :len(x)] = x
                labels[row, :len(y)] = y
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


def pack(split: Split, tokenizer, seq_len: int, conditioning=None) -> Packed:
    """Tokenise each side on its own and check both are big enough for seq_len. With
    conditioning (a Conditioning), both sides also get their control codes."""
    packed = Packed(_stream(tokenizer, split.train), _stream(tokenizer, split.val), seq_len)
    if conditioning is not None:
        packed.cond = build_codes(split.train, split.train_spans, tokenizer, conditioning, packed.train)
        packed.val_cond = build_codes(split.val, split.val_spans, tokenizer, conditioning, packed.val)
    if packed.train_windows < MIN_TRAIN_WINDOWS:
        raise CorpusError(f"the corpus is too small to train on: its training part has {len(packed.train)} tokens, "
                          f"fewer than {MIN_TRAIN_WINDOWS} windows of {seq_len}; give a longer corpus "
                          "or a shorter --seq-len")
    if len(packed.val) < MIN_VAL_TOKENS:
        raise CorpusError(f"the corpus is too small for a validation split: its held-out part has "
                          f"{len(packed.val)} tokens, at least {MIN_VAL_TOKENS} are needed; give a longer corpus "
                          "or a larger --val-fraction")
    return packed


# ---------------------------------------------------------------- conditioned training

# A coded window that starts mid-sentence starts its text at that sentence's start when it
# is at most this many tokens back (those tokens are context, not scored: the window
# before scores them), so that, as at generation time, the header is followed by a
# sentence's start.
BACK_TOKENS = 32

@dataclass
class Conditioning:
    """How conditioned training marks its windows (TrainConfig's --header settings) and
    the lore whose names the headers use (batplots.story.conditioning has the format)."""

    lore: object
    header_share: float  # windows that get codes; the rest stay plain
    marker_share: float  # sentences playing a beat, in a coded window, that get a marker
    # The coded windows come on top of the plain ones (an epoch: every window plain, then
    # header_share of them again with codes) instead of replacing them: replacing them cost
    # held-out perplexity without a header (docs/training.md).
    extra: bool = False


@dataclass
class Codes:
    """One side's token stream annotated for conditioning: which episode each token is in,
    each episode's header tokens, where sentences start and the marker of each one that
    plays a beat (an episode's first sentence gets none: only its header comes before it)."""

    episode: list[int]  # per token: the episode's number, -1 for a separator (EOS, newline)
    headers: list[list[int]]  # per episode: its header's token ids ([] when it names nobody)
    firsts: set[int]  # each episode's first token
    sentence_starts: list[int]  # sorted
    marks: dict[int, list[int]]  # sentence start -> its beat marker's token ids
    beats: dict[int, str]
    header_share: float
    marker_share: float
    header_lengths: list[int] = field(default_factory=list)
    extra: bool = False

    def _episode_at(self, t: int) -> int:
        while t < len(self.episode) and self.episode[t] < 0:
            t += 1
        return self.episode[t] if t < len(self.episode) else -1

    def _coded(self, stream, start: int, stop: int, scored_from: int, marker) -> tuple[list[int], list[int]]:
        """Tokens start..stop-1 with the codes: the header of start's episode first, another
        at each episode start, a marker before a sentence that plays a beat when marker()
        says so (not at start). Labels: -100 on the codes and on tokens before scored_from."""
        ids: list[int] = []
        labels: list[int] = []

        def code(tokens):
            ids.extend(tokens)
            labels.extend([-100] * len(tokens))

        ep = self._episode_at(start)
        if ep >= 0:
            code(self.headers[ep])
        for t in range(start, stop):
            if t != start and t in self.firsts:
                code(self.headers[self.episode[t]])
            if t != start and t in self.marks and marker():
                code(self.marks[t])
            ids.append(int(stream[t]))
            labels.append(int(stream[t]) if t >= scored_from else -100)
        return ids, labels

    def window(self, stream: torch.Tensor, start: int, seq_len: int, seed: int, epoch: int,
               coded: bool | None = None):
        """(inputs, labels) of the training window at start: plain, or (header_share of
        them, seeded by seed, epoch and start) with the codes added on top: the header, then
        the window's sentence from its start (at most BACK_TOKENS back: context, unscored),
        then the window's seq_len tokens with a marker before a marker_share of the sentences
        that play a beat. The same tokens are scored either way; codes and context are -100,
        so a coded window is longer than seq_len. coded True/False: codes or not, whatever
        the share says (the extra copies of Conditioning.extra)."""
        rng = random.Random(f"{seed}:{epoch}:{start}")
        share_says = rng.random() < self.header_share
        if not (share_says if coded is None else coded):
            x = stream[start:start + seq_len]
            return x, x
        i = bisect.bisect_right(self.sentence_starts, start) - 1
        back = self.sentence_starts[i] if i >= 0 and start - self.sentence_starts[i] <= BACK_TOKENS else start
        ids, labels = self._coded(stream, back, min(start + seq_len, len(stream)), start,
                                  lambda: rng.random() < self.marker_share)
        return torch.tensor(ids), torch.tensor(labels)

    def scored(self, stream: torch.Tensor, start: int, stop: int, markers: bool):
        """Tokens start..stop with the header before them (and at each episode start), and
        with markers a marker before every sentence that plays a beat; codes unscored, and so
        is the first token, as in the plain window (nothing before it): the same tokens count."""
        ids, labels = self._coded(stream, start, stop, start + 1, lambda: markers)
        return torch.tensor(ids), torch.tensor(labels)

    def report(self) -> dict:
        counts: dict[str, int] = {}
        for beat in self.beats.values():
            counts[beat] = counts.get(beat, 0) + 1
        return {"episodes": len(self.headers), "episodes_with_header": sum(1 for h in self.headers if h),
                "header_tokens_max": max(self.header_lengths, default=0),
                "header_tokens_mean": round(sum(self.header_lengths) / max(1, len(self.header_lengths)), 1),
                "sentences": len(self.sentence_starts), "sentences_with_beat": dict(sorted(counts.items()))}


def build_codes(texts: list[str], spans: list[list[tuple[int, int]]] | None, tokenizer, cond: Conditioning,
                stream: torch.Tensor) -> Codes:
    """The Codes of one side (texts and their episode spans as split_corpus gives them;
    stream is what _stream made of texts). Raises CorpusError when the text uses the codes'
    reserved characters or the tokenizer gives no character offsets."""
    from batplots.story import beats as beatslib
    from batplots.story import conditioning
    from batplots.story.lore import characters_in, villains_in

    if spans is None:
        spans = [[(0, len(t))] for t in texts]

    def tok(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    codes = Codes([], [], set(), [], {}, {}, cond.header_share, cond.marker_share, extra=cond.extra)
    eos = tokenizer.eos_token_id
    for n, (text, item_spans) in enumerate(zip(texts, spans)):
        bad = [ch for ch in conditioning.RESERVED if ch in text]
        if bad:
            raise CorpusError(f"the corpus uses {' '.join(bad)}, which only the conditioning header may use; "
                              "train with --no-header")
        if n and eos is not None:
            codes.episode.append(-1)
        base = len(codes.episode)
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise CorpusError(f"--header needs a tokenizer with character offsets (a fast one): {exc}") from exc
        ends = [e for _, e in enc["offset_mapping"]]
        owner = [-1] * len(ends)
        for a, b in item_spans:
            number = len(codes.headers)
            ep_text = text[a:b]
            head = tok(conditioning.header(villains_in(ep_text, cond.lore), characters_in(ep_text, cond.lore)))
            codes.headers.append(head)
            codes.header_lengths.append(len(head))
            first, last = bisect.bisect_right(ends, a), bisect.bisect_right(ends, b)
            owner[first:last] = [number] * (last - first)
            if first < last:
                codes.firsts.add(base + first)
            sentences, rest = sentence_spans(ep_text, final=True)
            if rest < len(ep_text) and ep_text[rest:].strip():
                sentences = sentences + [(rest, len(ep_text))]
            for i, (s, e) in enumerate(sentences):
                k = bisect.bisect_right(ends, a + s)
                if not first <= k < last:
                    continue
                codes.sentence_starts.append(base + k)
                beat = beatslib.label(ep_text[s:e]) if i else None
                if beat:
                    codes.marks[base + k] = tok(conditioning.beat_marker(beat))
                    codes.beats[base + k] = beat
        codes.episode.extend(owner)
    if len(codes.episode) != len(stream):
        raise CorpusError("the tokenizer's offsets do not match its tokens; train with --no-header")
    codes.sentence_starts.sort()
    return codes


def conditioning_for(cfg) -> Conditioning | None:
    """The Conditioning a TrainConfig asks for (None with --no-header); the headers name
    the lore of the corpus's own episodes (batplots.story.lore.build_lore, as write_lore does)."""
    if not cfg.header:
        return None
    from batplots.story.lore import build_lore

    return Conditioning(build_lore(read_corpus(cfg.corpus)), cfg.header_share, cfg.marker_share, cfg.header_extra)


def conditioning_report(packed: Packed, evaluate) -> dict:
    """For training.json: the codes of each side, and the held-out loss and perplexity with
    the headers, and with headers and a marker before every beat (evaluate(batches) -> dict),
    over the same tokens as the plain figure."""
    return {"train": packed.cond.report(), "val": packed.val_cond.report(),
            "val_with_header": evaluate(packed.val_batches(4, codes="header")),
            "val_with_header_and_beats": evaluate(packed.val_batches(4, codes="beats"))}
