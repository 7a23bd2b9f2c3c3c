"""Control codes (batplots.story.conditioning) and the conditioned training windows (batplots.train.dataset)."""

from __future__ import annotations

import random
import re

import pytest
import torch

from batplots.story import conditioning
from batplots.corpus.split import split_corpus
from batplots.train import dataset
from batplots.story.beats import BEATS
from batplots.corpus.episodes import CorpusError
from batplots.story.lore import build_lore
from batplots.corpus.episodes import read_corpus
from tests import tiny


# ------------------------------------------------------------------ the format

def test_header_names_villains_then_cast_and_ends_the_line():
    assert conditioning.header(["Riddler"], ["Batman", "Robin", "Commissioner Gordon"]) == (
        "[Villain: Riddler | Cast: Batman, Robin, Commissioner Gordon]\n")
    assert conditioning.header(["Joker", "Penguin"], []) == "[Villain: Joker, Penguin]\n"
    assert conditioning.header([], ["Batman"]) == "[Cast: Batman]\n"
    assert conditioning.header([], []) == conditioning.header(None, None) == ""


def test_header_keeps_to_its_limits_and_never_holds_a_reserved_character():
    many = [f"Villain Number {i}" for i in range(9)]
    text = conditioning.header(many, many)
    assert text.count(",") <= (conditioning.MAX_VILLAINS - 1) + (conditioning.MAX_CAST - 1)
    assert len(text) <= conditioning.MAX_HEADER_CHARS
    long = conditioning.header(["X" * 200, "Y" * 200], ["Z" * 200] * 4)
    assert len(long) <= conditioning.MAX_HEADER_CHARS and long.startswith("[Villain: " + "X" * 30)
    odd = conditioning.header(["Mr. [Freeze] | Ice"], ["  Batman  ", "Batman", ""])
    assert odd == "[Villain: Mr. Freeze Ice | Cast: Batman]\n"  # no stray codes, duplicates or blanks


def test_beat_marker_and_condition_put_the_marker_where_the_next_sentence_starts():
    assert conditioning.beat_marker("batcave") == " [Next: batcave]"
    for beat in BEATS:
        assert conditioning.beat_marker(beat).startswith(" [Next: ")
    with pytest.raises(conditioning.ConditioningError, match="unknown beat"):
        conditioning.beat_marker("lunch")
    story = "The Riddler robs the museum. Batman is baffled. "
    assert conditioning.condition(story, ["Riddler"], ["Batman"], None) == (
        "[Villain: Riddler | Cast: Batman]\n" + story)
    assert conditioning.condition(story, ["Riddler"], ["Batman"], "batcave") == (
        "[Villain: Riddler | Cast: Batman]\nThe Riddler robs the museum. Batman is baffled. [Next: batcave]")
    assert conditioning.condition(story, [], [], "fight") == story.rstrip() + " [Next: fight]"
    assert conditioning.condition(story) == story


def test_the_shared_corpus_never_uses_the_codes(shared_corpus):
    text = shared_corpus.read_text(encoding="utf-8")
    assert not [ch for ch in conditioning.RESERVED if ch in text]


@pytest.mark.real_model
def test_headers_of_the_shipped_lore_fit_the_token_budget(real_home):
    from batplots.story.lore import load_lore
    from batplots.model.weights import default_adapter, load_tokenizer

    tok = load_tokenizer(None)
    lore = load_lore(default_adapter())
    villains = sorted(lore.villains, key=len, reverse=True)
    cast = sorted(lore.characters, key=len, reverse=True)
    worst = conditioning.header(villains, cast)
    assert len(tok(worst, add_special_tokens=False)["input_ids"]) <= conditioning.HEADER_TOKENS
    for beat in BEATS:
        marker = tok(conditioning.beat_marker(beat), add_special_tokens=False)["input_ids"]
        assert len(marker) <= conditioning.MARKER_TOKENS


# ------------------------------------------------------------------ the windows

def _corpus(tmp_path, episodes: int = 6, sentences: int = 14):
    """Episodes separated by blank lines, each naming a villain (the tiny sentences)."""
    rng = random.Random(1)
    plots = [" ".join(rng.choice(tiny.SENTENCES) for _ in range(sentences)) for _ in range(episodes)]
    path = tmp_path / "episodes.txt"
    path.write_text("\n\n".join(plots) + "\n", encoding="utf-8")
    return path


def _packed(path, header_share=1.0, marker_share=1.0, seq_len=96, extra=False):
    tok = tiny.tokenizer()
    split = split_corpus(path, 0.2)
    cond = dataset.Conditioning(build_lore(read_corpus(path)), header_share, marker_share, extra)
    return tok, split, dataset.pack(split, tok, seq_len, cond)


def test_split_spans_cover_each_sides_episodes(tmp_path):
    path = _corpus(tmp_path)
    split = split_corpus(path, 0.2)
    plots = [ep.plot for ep in read_corpus(path)]
    train_eps = [split.train[0][a:b] for a, b in split.train_spans[0]]
    val_eps = [split.val[0][a:b] for a, b in split.val_spans[0]]
    assert train_eps[:-1] == plots[:len(train_eps) - 1]
    assert plots[len(train_eps) - 1].startswith(train_eps[-1])
    assert val_eps[-1] == plots[-1] and plots[len(train_eps) - 1].endswith(val_eps[0])


def test_windows_get_headers_and_markers_masked_exactly_over_the_codes(tmp_path):
    from batplots.story.beats import label
    from batplots.story.lore import characters_in, villains_in
    from batplots.text import split_sentences

    tok, split, packed = _packed(_corpus(tmp_path))
    stream = packed.train
    lore = build_lore(read_corpus(tmp_path / "episodes.txt"))
    starts = [0, 96, 192]
    x, y = packed.windows(torch.tensor(starts), epoch=0, seed=0)
    assert x.shape == y.shape and x.shape[1] > 96  # the codes come on top of the window's 96 tokens
    for row, start in enumerate(starts):
        ids, labels = x[row].tolist(), y[row].tolist()
        assert all(lab in (-100, i) for i, lab in zip(ids, labels))
        # Exactly the plain window's tokens are scored, in order; nothing else.
        assert [lab for lab in labels if lab != -100] == stream[start:start + 96].tolist()
        text = tok.decode([i for i, lab in zip(ids, labels) if lab != -100 or i != 0])
        assert text.startswith("[Villain: ") and "[Next: " in text  # marker_share 1
        # Each marker names the beat of the sentence right after it.
        for part in text.split(" [Next: ")[1:]:
            beat, rest = part.split("]", 1)
            sentence = split_sentences(rest.split("\n")[0].strip())[0]
            assert beat in BEATS and (label(sentence) == beat or not sentence.endswith("."))  # the last may be cut
        # Take the codes out: what is left is the plain text, from the window's sentence start on.
        uncoded = re.sub(r" \[Next: \w+\]", "", re.sub(r"\[(?:Villain|Cast): [^\]]*\]\n", "", text))
        window = tok.decode(stream[start:start + 96].tolist())
        assert uncoded.endswith(window) and len(uncoded) - len(window) < 32 * 8  # context: one sentence at most
    first_ep = split.train[0][slice(*split.train_spans[0][0])]
    expected = conditioning.header(villains_in(first_ep, lore), characters_in(first_ep, lore))
    assert tok.decode(x[0].tolist()).startswith(expected)


def test_plain_share_and_determinism(tmp_path):
    path = _corpus(tmp_path)
    _, _, plain = _packed(path, header_share=0.0)
    x, y = plain.windows(torch.tensor([0, 96]), epoch=1, seed=3)
    assert torch.equal(x, y) and torch.equal(x[0], plain.train[:96])
    _, _, half = _packed(path, header_share=0.5, marker_share=0.5)
    starts = torch.arange(0, half.train_windows * 96, 96)
    a = half.windows(starts, epoch=2, seed=5)
    b = half.windows(starts, epoch=2, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # a pure function of seed, epoch, start
    coded = sum(not torch.equal(a[0][i, :96], half.train[s:s + 96]) for i, s in enumerate(starts.tolist()))
    assert 0 < coded < len(starts)


def test_extra_headed_windows_come_on_top_of_every_plain_one(tmp_path):
    _, _, packed = _packed(_corpus(tmp_path), header_share=0.5, extra=True)
    n = packed.train_windows
    assert packed.epoch_windows == n + round(0.5 * n)
    for epoch in (0, 1):
        batches = packed.train_batches(epoch, 4, seed=3)
        assert all(torch.equal(a, b) for a, b in zip(batches, packed.train_batches(epoch, 4, seed=3)))
        starts = torch.cat(batches)
        plain, copies = starts[starts >= 0], -starts[starts < 0] - 1
        assert len(plain) == n and len(set(plain.tolist())) == n  # every window once, plain
        assert len(copies) == round(0.5 * n) and set(copies.tolist()) <= set(plain.tolist())
        x, y = packed.windows(starts, epoch, seed=3)
        for row, s in enumerate(starts.tolist()):
            if s >= 0:  # plain: exactly the window, all scored
                assert torch.equal(x[row, :96], packed.train[s:s + 96]) and torch.equal(x[row, :96], y[row, :96])
                assert (y[row, 96:] == -100).all()
            else:  # a coded copy: the same tokens scored, the codes on top
                assert [v for v in y[row].tolist() if v != -100] == packed.train[-s - 1:-s - 1 + 96].tolist()
                assert x.shape[1] > 96 and not torch.equal(x[row, :96], packed.train[-s - 1:-s + 95])


def test_held_out_perplexity_with_headers_scores_the_same_tokens(tmp_path):
    tok, split, packed = _packed(_corpus(tmp_path))
    scored = lambda batches: sum(int((labels[:, 1:] != -100).sum()) for _, labels in batches)  # noqa: E731
    plain, headed, beats = (packed.val_batches(4, codes=c) for c in ("", "header", "beats"))
    assert scored(plain) == scored(headed) == scored(beats) == len(packed.val) - len(packed.val_batches(1))
    assert tok.decode(headed[0][0][0].tolist()).startswith("[Villain: ")
    assert headed[0][0].shape[1] > plain[0][0].shape[1]


def test_a_corpus_with_the_reserved_characters_is_refused(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_text("The Joker laughs [loudly] at the museum. " * 40, encoding="utf-8")
    with pytest.raises(CorpusError, match="--no-header"):
        _packed(path)
