"""The corpus index against brute force, normalisation, provenance and loading."""

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batplots.corpus.episodes import CorpusError, Episode, read_corpus
from batplots.corpus.index import CorpusIndex, load_index, normalize_word, suffix_array, word_spans, words

# A tiny vocabulary, so that random texts share long spans often.
VOCAB = ["bat", "man", "robin", "joker", "the", "a", "holy", "cave"]


def brute_lengths(episodes: list[list[str]], query: list[str]) -> list[int]:
    """For each query start: the longest run of query words found in one episode."""
    out = []
    for i in range(len(query)):
        best = 0
        for ep in episodes:
            for j in range(len(ep)):
                n = 0
                while i + n < len(query) and j + n < len(ep) and query[i + n] == ep[j + n]:
                    n += 1
                best = max(best, n)
        out.append(best)
    return out


def make_index(episodes: list[list[str]]) -> CorpusIndex:
    return CorpusIndex([Episode(title=f"ep{k}", plot=" ".join(ws), url=f"https://x/{k}")
                        for k, ws in enumerate(episodes)])


word_lists = st.lists(st.sampled_from(VOCAB), max_size=30)


@settings(max_examples=150, deadline=None)
@given(episodes=st.lists(word_lists, min_size=1, max_size=4), query=st.lists(st.sampled_from(VOCAB + ["zzz"]), max_size=25))
def test_matching_lengths_equal_brute_force(episodes, query):
    index = make_index(episodes)
    got = index.matching_lengths(query)
    assert [length for length, _ in got] == brute_lengths(episodes, query)
    flat = index._ids
    for i, (length, pos) in enumerate(got):
        if length:
            # The reported corpus position really holds the span, inside one episode.
            assert [index._ids[pos + k] for k in range(length)] == index.encode(query[i:i + length])
            assert len({index.episode_at(pos + k) for k in range(length)}) == 1
            assert all(flat[pos + k] >= 0 for k in range(length))
        else:
            assert pos == -1


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(-3, 4), max_size=60))
def test_suffix_array_sorts_suffixes(ids):
    sa = suffix_array(np.asarray(ids, dtype=np.int64)).tolist()
    assert sa == sorted(range(len(ids)), key=lambda p: ids[p:])


def test_random_texts_longest_and_ngrams_against_brute_force():
    rng = random.Random(0)
    for _ in range(30):
        episodes = [[rng.choice(VOCAB) for _ in range(rng.randint(0, 200))] for _ in range(rng.randint(1, 5))]
        index = make_index(episodes)
        query = [rng.choice(VOCAB) for _ in range(rng.randint(0, 40))]
        brute = brute_lengths(episodes, query)
        match = index.longest(query)
        assert match.length == max(brute, default=0)
        if match.length:
            assert match.start == brute.index(match.length)  # earliest of the longest
        for n in (1, 3, 8):
            found, total = index.copied_in(" ".join(query), n)
            assert total == max(0, len(query) - n + 1)
            corpus_ngrams = {tuple(ep[j:j + n]) for ep in episodes for j in range(len(ep) - n + 1)}
            assert found == sum(tuple(query[i:i + n]) in corpus_ngrams for i in range(total))


def test_spans_never_cross_episodes():
    index = make_index([["the", "joker", "laughs"], ["at", "the", "museum"]])
    assert index.longest(words("the joker laughs at the museum")).length == 3
    assert index.n_words == 6


def test_normalisation_ignores_case_quotes_punctuation_and_whitespace():
    assert words("“Holy  Haberdashery,\n BATMAN!” cries O’Hara's") == \
        ["holy", "haberdashery", "batman", "cries", "o'hara's"]
    assert normalize_word("ＢＡＴ") == "bat"  # NFKC: full-width letters
    index = CorpusIndex([Episode(title="t", plot='Robin cries, "Holy haberdashery, Batman!" and runs.')])
    assert index.longest(words("robin CRIES holy haberdashery — batman and runs")).length == 7
    assert index.copied_in("robin CRIES holy haberdashery — batman and runs", 7) == (1, 1)
    assert index.copied_in("robin cries holy haberdashery batman and walks", 7) == (0, 1)
    spans = word_spans("Hi, O'Hara!")
    assert spans == [("hi", 0, 2), ("o'hara", 4, 10)]


def test_closest_passage_names_the_episode_and_quotes_both_sides():
    episodes = [
        Episode(title="Hi Diddle Riddle", plot="The Riddler leaves a riddle inside a cake at the World's Fair.",
                url="https://batman.fandom.com/wiki/Hi_Diddle_Riddle"),
        Episode(title="The Joker Is Wild", plot="The Joker escapes from prison during a baseball game.", url=None),
    ]
    index = CorpusIndex(episodes)
    passage = index.closest("Suddenly the Joker escapes from prison during lunch!")
    assert passage.episode == "The Joker Is Wild" and passage.url is None
    assert passage.words == 6 and passage.span == "the Joker escapes from prison during"
    assert passage.passage == "The Joker escapes from prison during a baseball game."
    riddle = index.closest("A RIDDLE inside a Cake, said Robin.")
    assert riddle.episode == "Hi Diddle Riddle" and riddle.url.endswith("Hi_Diddle_Riddle")
    assert riddle.words == 5 and riddle.span == "A RIDDLE inside a Cake"
    assert riddle.passage == "The Riddler leaves a riddle inside a cake at the World's Fair."
    assert index.closest("Nothing here matches, except Joker.") is None  # one word is not a passage


def test_passage_context_is_cut_with_ellipses():
    plot = "One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen."
    index = CorpusIndex([Episode(title="Numbers", plot=plot)])
    passage = index.closest("Count eight, nine, ten!")
    assert passage.words == 3 and passage.span == "eight, nine, ten"
    assert passage.passage == "…two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen."


def test_load_index_reads_jsonl_and_caches_by_content(tmp_path):
    path = tmp_path / "corpus.jsonl"
    records = [{"title": "Ep One", "plot": "Alfred dusts the Batpoles.", "url": "https://e/1"},
               {"title": "Ep Two", "plot": "Robin polishes the Batmobile.", "url": "https://e/2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    index = load_index(path)
    assert index.titles == ["Ep One", "Ep Two"] and index.sha256 and index.source == str(path)
    assert load_index(path) is index
    copy = tmp_path / "same.jsonl"
    copy.write_bytes(path.read_bytes())
    assert load_index(copy) is index  # same bytes, same index
    assert index.closest("Robin polishes the car").url == "https://e/2"
    with pytest.raises(CorpusError, match="does not exist"):
        load_index(tmp_path / "missing.jsonl")


def test_the_shared_corpus_is_indexed_and_finds_a_real_span(shared_corpus):
    index = load_index(shared_corpus)
    assert index.n_words > 10_000 and len(index.titles) > 10
    plot = read_corpus(shared_corpus)[3].plot
    sample = " ".join(plot.split()[40:60])  # 20 words from inside one episode
    match = index.longest(words(sample))
    assert match.length == len(words(sample))
    assert index.titles[index.episode_at(match.corpus_pos)] == read_corpus(shared_corpus)[3].title


def test_load_index_cleans_plots_as_training_does(tmp_path):
    path = tmp_path / "wiki.jsonl"
    path.write_text(json.dumps({"title": "Marked", "plot": "The [[Joker|Clown Prince]] steals '''the''' cake<ref>x</ref>."})
                    + "\n")
    index = load_index(path)
    assert index.longest(words("clown prince steals the cake")).length == 5
    assert index.closest("The Clown Prince steals the cake!").passage == "The Clown Prince steals the cake."
