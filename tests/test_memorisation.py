"""The memorisation measure: copied 8-gram share and longest copied span."""

from __future__ import annotations

import pytest

from batplots.measure import memorisation as mem
from batplots.corpus.episodes import Episode
from batplots.model.engine.base import Engine
from batplots.corpus.index import CorpusIndex, load_index

PLOT = ("The Joker escapes from Gotham State Penitentiary by hiding inside a giant birthday cake. "
        "Batman and Robin follow a trail of confetti to an abandoned toy factory on the waterfront.")


@pytest.fixture
def index():
    return CorpusIndex([Episode(title="One", plot=PLOT), Episode(title="Two", plot="Alfred polishes the Batmobile.")])


def test_a_verbatim_copy_scores_every_ngram_and_its_full_length(index):
    copy = "Batman and Robin follow a trail of confetti to an abandoned toy factory on the waterfront."
    report = mem.score(index, [copy])
    assert report.copied_ngrams == report.ngrams == 16 - 8 + 1
    assert report.copied_share == 1.0 and report.longest_span == 16
    assert report.longest_span_text.startswith("batman and robin follow")
    assert not report.passes()


def test_original_text_scores_nothing_and_case_or_punctuation_do_not_hide_a_copy(index):
    original = "The Penguin opens an umbrella shop while Chief O'Hara naps at his desk all afternoon."
    disguised = "the JOKER escapes, from Gotham State Penitentiary -- by hiding!"
    report = mem.score(index, [original, disguised])
    assert report.samples == 2 and report.per_sample_share[0] == 0.0
    assert report.longest_span == 9 and report.per_sample_share[1] == 1.0  # nine words copied, two 8-grams
    assert report.copied_ngrams == 2


def test_spans_do_not_run_across_episodes(index):
    joined = "an abandoned toy factory on the waterfront Alfred polishes the Batmobile"
    assert mem.score(index, [joined]).longest_span == 7  # not 11: the episode ends after "waterfront"


def test_the_openings_are_not_in_the_shared_corpus(shared_corpus):
    prompts = mem.load_prompts()
    assert len(prompts) == 20
    index = load_index(shared_corpus)  # a prompt sharing an 8-gram with the corpus would invite copying
    assert [p for p in prompts if index.copied_in(p, mem.NGRAM)[0]] == []


class Reciter(Engine):
    """Writes one fixed text whatever the prompt: the model is beside the point here."""

    name = "reciter"

    def __init__(self, text):
        super().__init__()
        self.text = text

    def count_tokens(self, text):
        return len(text.split())

    def pieces(self, prompt, settings, seed, cancel, guidance=None):
        for word in self.text.split(" "):
            yield " " + word


def test_measure_generates_one_continuation_per_sample_without_the_guard(index):
    report, outputs = mem.measure(Reciter(PLOT), index, samples=3, sentences=1)
    assert len(outputs) == 3 and [o["seed"] for o in outputs] == [0, 1, 2]
    assert outputs[0]["prompt"] == mem.load_prompts()[0]
    assert report.samples == 3 and report.copied_share == 1.0
    assert report.to_dict()["passes"] is False and report.to_dict()["longest_span_words"] == report.longest_span
