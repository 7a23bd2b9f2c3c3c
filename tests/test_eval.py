"""`batplots eval`: its numbers on a tiny corpus, computed by hand, and a whole run on tiny models."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from batplots.measure import evaluate as ev
from batplots.corpus import guard
from batplots.measure import memorisation
from batplots.measure import storyeval
from batplots.cli.main import main
from batplots.corpus.episodes import Episode
from batplots.model.engine import Settings
from batplots.model.engine.base import MIN_COPY_LIMIT
from batplots.corpus.index import CorpusIndex, load_index
from tests import tiny
from tests.test_storyeval import COPY_EPISODES, PARAPHRASE, VERBATIM

CORPUS = CorpusIndex([Episode(title="Ep", plot="The Joker steals the golden cat from the museum at midnight. "
                                               "Robin laughs.")])


def sample(text, seconds, check=0.0, flags=()):
    return ev.Sample(prompt=0, sample=0, seed=0, text=text, sentences=[], seconds=seconds,
                     check_seconds=check, flags=list(flags))


SAMPLES = [
    # 15 words, 8 word 8-grams of which 2 are in the corpus (from "the" and "joker");
    # copies 9 words; 2 sentences of 10 and 5 words; Joker, Alfred, Aunt Harriet.
    sample(" The Joker steals the golden cat from the museum today. Alfred and Aunt Harriet sigh.", 1.0, 0.1,
           [{"sentence": 0, "score": 9}]),
    # One sentence of 7 words (no 8-gram); 6 bigrams, 2 repeated; "robin" is its longest copy.
    sample(" Batman and Robin dance and Robin dance.", 3.0),
    # 11 words, 4 8-grams, no corpus word; 2 sentences of 3 and 8 words; Barbara is not also Gordon.
    sample(" Commissioner Gordon waits. Barbara Gordon reads a long book about Gotham.", 2.0, 0.2),
]


def test_continuation_metrics_by_hand():
    m = ev.continuation_metrics(SAMPLES, CORPUS, sentences=2, copy_limit=8)
    assert m["continuations"] == 3
    assert m["exact_n_rate"] == pytest.approx(2 / 3)
    assert (m["copied_ngrams"], m["ngrams"]) == (2, 12)
    assert m["copied_ngram_share"] == pytest.approx(1 / 6)
    assert m["longest_copied_mean"] == pytest.approx((9 + 1 + 0) / 3)
    assert m["longest_copied_max"] == 9 and m["continuations_copying_limit"] == 1
    assert m["distinct_2"] == pytest.approx(28 / 30)
    assert m["mean_sentence_words"] == pytest.approx((10 + 5 + 7 + 3 + 8) / 5)
    assert m["characters_per_turn"] == pytest.approx((3 + 2 + 2) / 3)
    assert m["median_seconds"] == 2.0 and m["total_seconds"] == 6.0
    assert m["check_share"] == pytest.approx(0.3 / 6)
    assert m["flagged_sentences"] == 1


def test_characters_prefer_the_longest_name():
    assert ev.characters_in("Barbara Gordon visits Commissioner Gordon.") == {"Barbara Gordon", "Commissioner Gordon"}
    assert ev.characters_in("Gordon calls; Mr. Freeze and the Mad Hatter laugh at CHIEF O’HARA.") == {
        "Commissioner Gordon", "Mr. Freeze", "Mad Hatter", "Chief O'Hara"}
    assert ev.characters_in("Penguins freeze in the mad rain.") == set()


def test_exactly_n_and_distinct_2_edges():
    assert ev.exactly_n(" One. Two.", 2) and not ev.exactly_n(" One. Two", 2) and not ev.exactly_n(" One.", 2)
    assert ev.distinct_2(["a b a b"]) == pytest.approx(2 / 3)
    assert ev.distinct_2(["one"]) is None


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = tiny.llama()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: each token has probability 1/V
    texts = [tiny.TEXT[:300], tiny.TEXT[:50]]
    assert ev.perplexity(model, tiny.tokenizer(), texts, seq_len=16) == pytest.approx(model.config.vocab_size, rel=1e-4)


def test_perplexity_equals_the_models_own_loss_over_windows():
    model, tok = tiny.trained_llama(), tiny.tokenizer()
    text = tiny.TEXT[:400]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    seq = 24
    nll = count = 0.0
    with torch.no_grad():
        for i in range(0, len(ids), seq):
            w = torch.tensor([ids[i:i + seq]])
            if w.shape[1] > 1:
                nll += float(model(input_ids=w, labels=w).loss) * (w.shape[1] - 1)
                count += w.shape[1] - 1
    assert ev.perplexity(model, tok, [text], seq_len=seq) == pytest.approx(math.exp(nll / count), rel=1e-4)
    # Bits per character of the predicted tokens: the same loss over their characters
    # (each window's first token is context), so bases with other tokenizers compare.
    chars = sum(len(tok.decode(ids[i + 1:i + seq])) for i in range(0, len(ids), seq))
    scores = ev.heldout_scores(model, tok, [text], seq_len=seq)
    assert scores["bits_per_char"] == pytest.approx(nll / math.log(2) / chars, rel=1e-4)
    assert chars < len(text)  # not the whole text: the first tokens were not predicted


def test_prompts(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# a comment\n\n  First opening.  \nSecond opening.\n")
    assert ev.load_prompts(path) == ["First opening.", "Second opening."]
    path.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        ev.load_prompts(path)
    with pytest.raises(ValueError, match="cannot read prompts"):
        ev.load_prompts(tmp_path / "missing.txt")


def test_shipped_openings_are_twenty_and_not_in_the_corpus(shared_corpus):
    prompts = ev.load_prompts()
    index = load_index(shared_corpus)
    assert len(prompts) == 20
    assert all(index.copied_in(p, ev.NGRAM)[0] == 0 for p in prompts)


def test_guard_eval_story_eval_and_memorisation_count_copies_alike(tmp_path):
    """Every copy figure is index.copied_in on the same text: eval's plain runs, the
    story runs, memorisation, and the guard, which refuses a sentence at limit k
    exactly when it holds a copied k-gram."""
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"title": e.title, "plot": e.plot}) + "\n" for e in COPY_EPISODES),
                    encoding="utf-8")
    copy_guard = guard.guard_for_corpus(path)
    index = copy_guard.index
    texts = [VERBATIM, PARAPHRASE,
             "Robin notes that the Riddler's latest clue “What has keys” puzzles everyone.",  # 8 copied words
             "Gotham waits where Batman and Robin must hurry before dawn."]  # 7 copied words
    assert [index.copied_in(t, ev.NGRAM)[0] for t in texts] == [24, 0, 1, 0]
    for text in texts:
        copied = index.copied_in(text, ev.NGRAM)
        plain = ev.continuation_metrics([sample(" " + text, 1.0)], index, sentences=1)
        assert (plain["copied_ngrams"], plain["ngrams"]) == copied
        passage = storyeval.Passage(kind="story", item=0, turn=0, text=" " + text, sentences=[text], seconds=0.1)
        story = storyeval.metrics([passage], index, sentences=1)
        assert (story["copied_ngrams"], story["ngrams"]) == copied
        report = memorisation.score(index, [text])
        assert (report.copied_ngrams, report.ngrams) == copied
        assert plain["longest_copied_max"] == report.longest_span
        for limit in range(MIN_COPY_LIMIT, report.longest_span + 2):
            refused = copy_guard.sentence_check(limit)(text)
            assert (refused is not None) == (index.copied_in(text, limit)[0] > 0)


def test_generate_samples_is_seeded_paired_and_reproducible(tiny_engine):
    prompts = ["The Joker laughs.", "Robin waits."]
    variants = {"a": Settings(sentences=1, copy_limit=0), "b": Settings(sentences=1, temperature=1.0, copy_limit=0)}
    first = ev.generate_samples(tiny_engine, prompts, 2, variants)
    again = ev.generate_samples(tiny_engine, prompts, 2, variants)
    for name in variants:
        assert [(s.prompt, s.sample, s.seed) for s in first[name]] == [(0, 0, ev.sample_seed(0, 0)), (0, 1, 1967),
                                                                          (1, 0, 2966), (1, 1, 2967)]
        assert [s.text for s in first[name]] == [s.text for s in again[name]]
        assert all(s.seconds > 0 and len(s.sentences) == 1 for s in first[name])


def test_targets_and_table():
    runs = {name: {**ev.continuation_metrics(SAMPLES, CORPUS, 2), "copy_limit": 8} for name in ev.RUNS}
    targets = ev.check_targets(runs, guard_cost=0.05)
    assert targets["guard_cost"]["pass"] and not targets["copied_ngram_share"]["pass"]
    assert not targets["longest_copied_max"]["pass"] and not targets["exact_n_rate"]["pass"]
    report = {"runs": runs, "perplexity": {"base": 20.5, "adapter": 11.25}, "targets": targets, "guard_cost": 0.05,
              "model": "tiny + a", "prompts": {"count": 1}, "samples": 3, "sentences": 2, "seed": 1966,
              "copy_limit": 8}
    table = ev.format_table(report)
    assert "held-out perplexity" in table and "20.50" in table and "11.25" in table
    assert "16.7%" in table and "+5.0%" in table
    assert "missed: copied_ngram_share, longest_copied_max, exact_n_rate" in table


# ------------------------------------------------------------------ a whole run on tiny models

@pytest.fixture
def tiny_setup(tmp_path):
    """A tiny base, a real LoRA adapter whose training.json names a JSONL corpus, and prompts."""
    from peft import LoraConfig, get_peft_model

    corpus = tmp_path / "corpus.jsonl"
    episodes = [{"title": f"Episode {i}", "url": f"https://e/{i}", "plot": " ".join(tiny.SENTENCES[i:] + tiny.SENTENCES[:i])}
                for i in range(8)]
    corpus.write_text("".join(json.dumps(e) + "\n" for e in episodes))
    base = tmp_path / "base"
    tiny.trained_llama().save_pretrained(base)
    tiny.tokenizer().save_pretrained(base)
    adapter = tmp_path / "adapter"
    get_peft_model(tiny.llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    (adapter / "training.json").write_text(json.dumps({"corpus": {"path": str(corpus)},  # as batplots train writes it
                                                       "split": {"val_fraction": 0.25, "seq_len": 32}}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The Riddler hums.\nAlfred dusts the Batcave.\n")
    return base, adapter, prompts


def test_eval_command_runs_end_to_end_and_is_reproducible(tiny_setup, tmp_path):
    base, adapter, prompts = tiny_setup
    args = ["eval", "--base", str(base), "--adapter", str(adapter), "--prompts", str(prompts), "--samples", "2",
            "-n", "1", "--stories", "1", "--takes", "2"]
    runner = CliRunner()
    out = runner.invoke(main, args + ["--out", str(tmp_path / "r1.json")])
    assert out.exit_code == 0, out.output
    assert "held-out perplexity" in out.stdout and "adapter+guard" in out.stdout
    report = json.loads((tmp_path / "r1.json").read_text())
    assert set(report["runs"]) == set(ev.RUNS)
    assert report["perplexity"]["split"]["val_titles"] == ["Episode 2", "Episode 6"]
    assert report["perplexity"]["seq_len"] == 32 and report["perplexity"]["base"] > 1
    for name in ev.RUNS:
        assert report["runs"][name]["continuations"] == 4
        assert [c["seed"] for c in report["continuations"][name]] == [1966, 1967, 2966, 2967]
    assert report["runs"]["adapter+guard"]["copy_limit"] == 8 and report["runs"]["adapter"]["copy_limit"] == 0
    assert report["targets"]["exact_n_rate"]["at_least"] == 0.98
    story = report["story"]
    assert set(story["runs"]) == set(storyeval.RUNS) and story["takes"] == 2
    for name, run in story["runs"].items():  # 2 openings + 1 scripted story of 4 model turns
        assert run["passages"] == 6 and len(story["passages"][name]) == 6
        assert {p["kind"] for p in story["passages"][name]} == {"opening", "story"}
    assert story["runs"]["adapter+writer"]["takes"] == 2 and "villain_named >= 50%" in story["runs"]["base"]["targets"]
    beat_run = story["passages"]["adapter+writer+beat"]
    assert all(p["beat_drawn"] in storyeval.BUTTON_BEATS for p in beat_run if p["kind"] == "story")
    assert 0 <= story["runs"]["adapter+writer+beat"]["beat_played"] <= 1
    assert "story metrics: 2 openings and 1 scripted stories" in out.stdout and "naming the villain" in out.stdout
    again = json.loads(runner.invoke(main, args + ["--json", "--out", str(tmp_path / "r2.json")]).stdout)
    for name in ev.RUNS:
        assert [c["text"] for c in again["continuations"][name]] == [c["text"] for c in report["continuations"][name]]
    assert again["perplexity"]["adapter"] == pytest.approx(report["perplexity"]["adapter"])
    # The guard changes a continuation only where it rejected a sentence of it.
    check = guard.sentence_check(load_index(tmp_path / "corpus.jsonl"), 8)
    pairs = zip(report["continuations"]["adapter"], report["continuations"]["adapter+guard"])
    unchecked = [(plain, guarded) for plain, guarded in pairs if all(check(s) is None for s in plain["sentences"])]
    assert unchecked  # these seeds give some continuations the guard lets through
    assert all(guarded["text"] == plain["text"] and not guarded["flags"] for plain, guarded in unchecked)


def test_eval_errors_are_clear(tiny_setup, tmp_path):
    base, adapter, prompts = tiny_setup
    runner = CliRunner()
    out = runner.invoke(main, ["eval", "--base", str(base), "--adapter", "none", "--prompts", str(prompts)])
    assert out.exit_code == 1 and "give --adapter DIR" in out.output
    (adapter / "training.json").write_text(json.dumps({"corpus": str(tmp_path / "gone.jsonl")}))
    out = runner.invoke(main, ["eval", "--base", str(base), "--adapter", str(adapter), "--prompts", str(prompts)])
    assert out.exit_code == 1 and "gone.jsonl is not on this machine" in out.output and "--corpus FILE" in out.output
    out = runner.invoke(main, ["eval", "--base", str(base), "--adapter", str(adapter), "--samples", "0"])
    assert out.exit_code == 1 and "--samples must be from 1 to 100" in out.output
    out = runner.invoke(main, ["eval", "--engine", "openai", "--adapter", str(adapter)])
    assert out.exit_code == 1 and "use --engine llama or --engine transformers" in out.output
