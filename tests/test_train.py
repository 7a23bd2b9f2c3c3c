"""Fine-tuning: the split, the training loop, checkpoints, outputs and the CLI.

Tiny random-initialised Llamas (tests/tiny.py) saved as model directories stand in
for the base, so every run takes seconds; one test trains the real embedded base
for a couple of steps on a slice of the shared corpus.
"""

from __future__ import annotations

import json
import os
import random
import signal

import pytest
import torch
from click.testing import CliRunner

from batplots.corpus.split import split_corpus
from batplots.train import dataset
from batplots.train import finetune as train
from batplots.cli.main import main as cli
from batplots.corpus.episodes import CorpusError
from batplots.text import sentence_spans
from batplots.train.config import ConfigError, TrainConfig, parse_layers
from tests import tiny


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny Llama and its tokenizer saved as a Hugging Face model directory."""
    path = tmp_path_factory.mktemp("tiny-base")
    tiny.llama(seed=0).save_pretrained(path)
    tiny.tokenizer().save_pretrained(path)
    return path


def story(n_sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(tiny.SENTENCES) for _ in range(n_sentences))


@pytest.fixture
def corpus_txt(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(story(160), encoding="utf-8")
    return path


@pytest.fixture
def corpus_jsonl(tmp_path):
    path = tmp_path / "episodes.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(20):
            fh.write(json.dumps({"title": f"Episode {i}", "plot": story(10, seed=i), "revid": 1000 + i,
                                 "url": f"https://batman.fandom.com/wiki/Episode_{i}"}) + "\n")
    return path


def config(corpus, tmp_path, base, **overrides) -> TrainConfig:
    values = dict(corpus=str(corpus), out=str(tmp_path / "out"), base=str(base), seq_len=32, batch_size=4,
                  epochs=3, lr=3e-3, warmup_steps=2, memorisation_samples=0, progress=False, threads=1, layers="all",
                  lora_r=16, lora_alpha=32,  # the tiny model learns fast enough to test with these
                  header=False)  # plain windows: a header would fill a 32-token window (tests below use it)
    values.update(overrides)
    return TrainConfig(**values)


# ------------------------------------------------------------------ the split

def test_text_split_is_a_contiguous_tail_cut_on_a_sentence_boundary(corpus_txt):
    split = split_corpus(corpus_txt, 0.1)
    text = corpus_txt.read_text()
    assert split.kind == "text" and len(split.train) == len(split.val) == 1
    assert split.train[0] + " " + split.val[0] == text
    cut = len(split.train[0]) + 1
    assert cut in {start for start, _ in sentence_spans(text)[0]}  # a sentence starts at the cut
    assert 0.08 < len(split.val[0]) / len(text) < 0.13
    assert split_corpus(corpus_txt, 0.1) == split  # deterministic


def test_jsonl_split_holds_out_whole_episodes_spread_over_the_corpus(corpus_jsonl):
    split = split_corpus(corpus_jsonl, 0.1)
    assert split.kind == "jsonl" and split.episodes == 20
    assert split.val_titles == ["Episode 5", "Episode 15"]
    assert len(split.train) == 18 and len(split.val) == 2
    assert not set(split.val) & set(split.train)
    assert [r for _, r in split.revids] == list(range(1000, 1020))
    one = split_corpus(corpus_jsonl, 0.01)
    assert len(one.val) == 1  # at least one episode


def test_packing_never_mixes_windows_across_the_cut(corpus_txt):
    split = split_corpus(corpus_txt, 0.1)
    tok = tiny.tokenizer()
    packed = dataset.pack(split, tok, 32)
    assert packed.val.tolist() == tok(split.val[0], add_special_tokens=False)["input_ids"]
    assert packed.train.tolist() == tok(split.train[0], add_special_tokens=False)["input_ids"]
    covered = sum(int((labels != -100).sum()) for _, labels in packed.val_batches(4))
    assert covered == len(packed.val)  # every held-out token is scored once


def test_batch_order_is_a_pure_function_of_seed_and_epoch(corpus_txt):
    packed = dataset.pack(split_corpus(corpus_txt, 0.1), tiny.tokenizer(), 32)
    first = [b.tolist() for b in packed.train_batches(1, 4, seed=7)]
    assert first == [b.tolist() for b in packed.train_batches(1, 4, seed=7)]
    assert first != [b.tolist() for b in packed.train_batches(2, 4, seed=7)]
    flat = sorted(s for b in packed.train_batches(0, 4, seed=7) for s in b.tolist())
    assert flat == list(range(0, packed.train_windows * 32, 32))  # epoch 0: each window once
    fixed = sorted(s for b in packed.train_batches(3, 4, seed=7, shift=False) for s in b.tolist())
    assert fixed == flat  # cached runs keep the grid


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x00\x01\x02binary", "looks binary"),
    (b"Batman \xff\xfe wins.", "not UTF-8"),
    (b"Batman wins. Robin cheers.", "too small"),
    (b'{"title": "One", "plot": "Batman wins. Robin cheers. The Joker flees."}\n', "at least 2"),
    (b'{"title": "One"}\n', "has no 'plot'"),
])
def test_bad_corpora_fail_with_their_messages(tmp_path, tiny_base, content, message):
    suffix = ".jsonl" if content.startswith(b"{") else ".txt"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        train.main(config(path, tmp_path, tiny_base))
    assert not (tmp_path / "out" / "adapter_config.json").exists()


def test_missing_corpus_and_bad_settings_are_named(tmp_path, tiny_base):
    with pytest.raises(CorpusError, match="does not exist"):
        train.main(config(tmp_path / "nope.txt", tmp_path, tiny_base))
    with pytest.raises(ConfigError, match="--lora-r 0: must be 1-"):
        train.main(config(tmp_path / "nope.txt", tmp_path, tiny_base, lora_r=0))
    with pytest.raises(ConfigError, match="--val-fraction"):
        TrainConfig(corpus="x", val_fraction=0.9).validate()


def test_parse_layers():
    assert parse_layers("all", 30) is None
    assert parse_layers("top:3", 30) == [27, 28, 29]
    assert parse_layers("2-4", 30) == [2, 3, 4]
    assert parse_layers("5, 1", 30) == [1, 5]
    for bad, message in [("top:0", "use all"), ("x", "use all"), ("top:31", "only 30"), ("28-30", "0-29")]:
        with pytest.raises(ConfigError, match=message):
            parse_layers(bad, 30)


# ------------------------------------------------------------------ training

def test_loss_goes_down_and_the_outputs_are_complete(tmp_path, tiny_base, corpus_txt):
    result = train.main(config(corpus_txt, tmp_path, tiny_base, memorisation_samples=2))
    s = result.summary
    assert result.status == "finished"
    assert s["evaluations"][-1]["loss"] < s["evaluations"][0]["loss"] < s["base_eval"]["loss"]
    first = sum(r[2] for r in s["train_log"][:3]) / 3
    last = sum(r[2] for r in s["train_log"][-3:]) / 3
    assert last < first - 0.5
    assert s["val_ppl"] == min(e["ppl"] for e in s["evaluations"])
    out = result.out
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md", "adapter_config.json", "adapter_model.safetensors", "lore.json", "loss.png", "training.json"]
    saved = json.loads((out / "training.json").read_text())
    for key in ("config", "seed", "corpus", "split", "evaluations", "best_step", "wall_seconds", "device",
                "versions", "base_eval", "memorisation"):
        assert key in saved, key
    assert saved["corpus"]["sha256"] == s["corpus"]["sha256"] and len(saved["corpus"]["sha256"]) == 64
    assert saved["config"]["lr"] == 3e-3 and saved["split"]["val_tokens"] > 0
    assert saved["memorisation"]["samples"] == 2
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mask = os.umask(0)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o666 & ~mask}  # not the temp files' 0600
    card = (out / "MODEL_CARD.md").read_text()
    assert "Batman Wiki, batman.fandom.com, plot sections of the 1960s series episode pages" in card
    assert "CC BY-SA 3.0" in card and f"{s['val_ppl']:.2f}" in card and "Memorisation" in card


def test_saved_adapter_reloads_with_plain_peft_to_identical_logits(tmp_path, tiny_base, corpus_txt):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train.main(config(corpus_txt, tmp_path, tiny_base, epochs=2))
    ids = torch.tensor([tiny.tokenizer()("Batman and Robin slide down the Batpoles.")["input_ids"]])
    with torch.no_grad():
        trained = result.model(input_ids=ids).logits
        bare = AutoModelForCausalLM.from_pretrained(tiny_base)(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), result.out)
        again = reloaded.eval()(input_ids=ids).logits
    assert not torch.allclose(trained, bare, atol=1e-3)  # training changed the model
    torch.testing.assert_close(again, trained, rtol=0, atol=1e-6)
    saved = json.loads((result.out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(tiny_base)  # the base as given, not a cache path
    assert saved["target_modules"] == sorted(saved["target_modules"])


def test_cached_frozen_layers_train_exactly_like_full_forwards(tmp_path, tiny_base, corpus_txt):
    runs = {}
    for cache in (True, False):
        cfg = config(corpus_txt, tmp_path / str(cache), tiny_base, layers="top:1", cache_frozen=cache,
                     lora_dropout=0.0, epochs=1)
        runs[cache] = train.main(cfg).summary
    assert runs[True]["frozen_layer_cache"].startswith("on")
    assert runs[False]["frozen_layer_cache"].startswith("off")
    # Epoch 0 has the same windows either way, so the losses agree to float noise.
    for a, b in zip(runs[True]["train_log"], runs[False]["train_log"]):
        assert a[2] == pytest.approx(b[2], abs=1e-4)


def test_interrupt_then_resume_continues_at_the_same_step_with_the_same_batches(tmp_path, tiny_base, corpus_txt):
    straight, interrupted, resumed = [], [], []
    reference = train.main(config(corpus_txt, tmp_path / "a", tiny_base, max_steps=14, eval_every=4),
                           on_step=lambda step, epoch, starts, loss: straight.append((step, starts.tolist(), loss)))

    def ctrl_c_at_6(step, epoch, starts, loss):
        interrupted.append((step, starts.tolist(), loss))
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, caught by the trainer

    cfg = config(corpus_txt, tmp_path / "b", tiny_base, max_steps=14, eval_every=4)
    first = train.main(cfg, on_step=ctrl_c_at_6)
    assert first.status == "interrupted" and first.summary["step"] == 6
    assert (tmp_path / "b" / "out" / train.CHECKPOINT).is_file()
    with pytest.raises(train.TrainError, match="--resume"):
        train.main(cfg)  # a new run would overwrite the unfinished one
    done = train.main(TrainConfig(out=cfg.out, resume=True, progress=False),
                      on_step=lambda step, epoch, starts, loss: resumed.append((step, starts.tolist(), loss)))
    assert resumed[0][0] == 7  # the next step, not a restart
    assert interrupted + resumed == straight  # same batches and the same losses, step for step
    def evals(result):
        return [(e["step"], e["loss"]) for e in result.summary["evaluations"]]

    assert evals(done) == evals(reference) and len(evals(done)) == 4
    assert not (tmp_path / "b" / "out" / train.CHECKPOINT).exists()
    with pytest.raises(train.TrainError, match="nothing to continue"):
        train.main(TrainConfig(out=cfg.out, resume=True, progress=False))


def _episodes(tmp_path, n: int = 12):
    path = tmp_path / "episodes.txt"
    path.write_text("\n\n".join(story(12, seed=i) for i in range(n)) + "\n", encoding="utf-8")
    return path


def test_a_run_with_headers_trains_and_reports_the_conditioning(tmp_path, tiny_base):
    cfg = config(_episodes(tmp_path), tmp_path, tiny_base, header=True, header_share=0.5, marker_share=0.5,
                 seq_len=96, epochs=2)
    result = train.main(cfg)
    s = result.summary
    assert result.status == "finished" and s["config"]["header"] is True
    assert s["evaluations"][-1]["loss"] < s["base_eval"]["loss"]
    cond = s["conditioning"]
    assert cond["train"]["episodes_with_header"] == cond["train"]["episodes"] > 0
    assert cond["val_with_header"]["tokens"] == cond["val_with_header_and_beats"]["tokens"] == s["best"]["tokens"]
    saved = json.loads((result.out / "training.json").read_text())
    assert saved["conditioning"]["val_with_header"]["ppl"] == cond["val_with_header"]["ppl"]
    assert "Conditioning" in (result.out / "MODEL_CARD.md").read_text()
    assert s["frozen_layer_cache"].startswith("off (--header")


def test_interrupt_then_resume_with_headers_repeats_the_same_steps(tmp_path, tiny_base):
    corpus = _episodes(tmp_path)
    straight, interrupted, resumed = [], [], []
    # --header-extra: the coded windows come on top of the plain ones (sent as -(start + 1)).
    overrides = dict(header=True, header_extra=True, seq_len=96, max_steps=8, eval_every=3)
    train.main(config(corpus, tmp_path / "a", tiny_base, **overrides),
               on_step=lambda step, epoch, starts, loss: straight.append((step, starts.tolist(), loss)))

    def ctrl_c_at_4(step, epoch, starts, loss):
        interrupted.append((step, starts.tolist(), loss))
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = config(corpus, tmp_path / "b", tiny_base, **overrides)
    assert train.main(cfg, on_step=ctrl_c_at_4).status == "interrupted"
    done = train.main(TrainConfig(out=cfg.out, resume=True, progress=False),
                      on_step=lambda step, epoch, starts, loss: resumed.append((step, starts.tolist(), loss)))
    assert interrupted + resumed == straight  # the coded windows too: same batches, same losses
    assert any(s < 0 for _, starts, _ in straight for s in starts)  # extra coded copies were trained on
    assert done.summary["config"]["header"] is True and "conditioning" in done.summary


def test_early_stopping_fires_on_a_validation_plateau(tmp_path, tiny_base, corpus_txt):
    # A learning rate this small leaves validation loss flat (changes below min_delta).
    cfg = config(corpus_txt, tmp_path, tiny_base, lr=1e-9, epochs=20, eval_every=2, patience=3, min_delta=0.01)
    result = train.main(cfg)
    s = result.summary
    assert result.status == "early-stopped"
    assert len(s["evaluations"]) == 4 and s["best_step"] == 2  # the first, then three without progress
    assert s["steps"] == 8 < s["planned_steps"]


def test_jsonl_corpus_trains_and_the_card_lists_revisions(tmp_path, tiny_base, corpus_jsonl):
    result = train.main(config(corpus_jsonl, tmp_path, tiny_base, epochs=1))
    card = (result.out / "MODEL_CARD.md").read_text()
    assert result.summary["split"]["val_episodes"] == 2
    assert "Episode 3: 1003" in card


def test_cli_train_writes_an_adapter(tmp_path, tiny_base, corpus_txt):
    out = tmp_path / "cli-out"
    args = ["train", "--corpus", str(corpus_txt), "--out", str(out), "--base", str(tiny_base), "--seq-len", "32",
            "--epochs", "1", "--memorisation-samples", "0", "--no-progress", "--threads", "1", "--layers", "all"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "validation perplexity" in result.output and (out / "adapter_model.safetensors").is_file()
    bad = CliRunner().invoke(cli, ["train", "--corpus", str(tmp_path / "missing.txt"), "--out", str(out)])
    assert bad.exit_code != 0 and "does not exist" in bad.output
    rank = CliRunner().invoke(cli, ["train", "--corpus", str(corpus_txt), "--lora-r", "0"])
    assert rank.exit_code == 2 and "--lora-r 0: must be 1-" in rank.output


@pytest.mark.real_model
def test_real_base_trains_a_couple_of_steps_on_the_shared_corpus(real_home, tmp_path, shared_corpus):
    text = shared_corpus.read_text(encoding="utf-8")[:3000]  # ~700 tokens: a few windows, seconds of work
    sliced = tmp_path / "slice.txt"
    sliced.write_text(text, encoding="utf-8")
    cfg = TrainConfig(corpus=str(sliced), out=str(tmp_path / "out"), seq_len=64, batch_size=2, max_steps=2,
                      eval_every=2, layers="top:2", lr=1e-3, memorisation_samples=0, progress=False,
                      header=False)  # plain: the frozen-layer cache is what this test watches
    result = train.main(cfg)
    s = result.summary
    assert result.status == "max-steps" and s["steps"] == 2
    assert s["frozen_layer_cache"].startswith("on")
    assert 5 < s["base_eval"]["ppl"] < 500 and s["val_ppl"] < s["base_eval"]["ppl"] * 1.05
    assert (result.out / "adapter_model.safetensors").is_file()


def test_a_gpu_run_is_described_as_the_same_recipe_only_when_it_is():
    from batplots.train.report import gpu_run_text

    config = TrainConfig(corpus="c.txt").to_dict()
    gpu = {"device": {"type": "cuda", "name": "NVIDIA H200", "dtype": "bfloat16"}, "val_ppl": 48.77,
           "base_eval": {"ppl": 66.87}, "ppl_ratio_vs_base": 0.729, "best_step": 18, "seconds_to_best": 17.1,
           "wall_seconds": 20.5, "setup_seconds": {"load_s": 3.0, "cache_s": 0.4}, "train_tokens_per_second": 6898.6,
           "versions": {"torch": "2.11", "transformers": "5.17", "peft": "0.21"}, "config": dict(config)}
    assert gpu_run_text(gpu, config).startswith("The same recipe on NVIDIA H200 (bfloat16): best validation "
                                                "perplexity 48.77 (bare base 66.87, ratio 0.729) at step 18")
    gpu["config"] = {**config, "layers": "top:12", "lr": 2e-3}
    assert gpu_run_text(gpu, config).startswith("A GPU run of another recipe (layers top:12, lr 0.002) on NVIDIA H200")


def test_the_shipped_adapter_is_small_complete_and_made_by_the_defaults():
    """README: `batplots train --corpus ../shared/data/batman66.txt` with the defaults made it."""
    from batplots.model.weights import default_adapter
    from batplots.train.report import RECIPE_KEYS

    adapter = default_adapter("fast")  # the 135M's: the 1.5B's recipe is in docs/bases.md
    assert adapter is not None
    names = {p.name for p in adapter.iterdir()}
    assert names == {"adapter_config.json", "adapter_model.safetensors", "training.json", "loss.png", "MODEL_CARD.md",
                     "lore.json"}
    assert sum(p.stat().st_size for p in adapter.iterdir()) <= 10_000_000  # issue 3: at most 10 MB
    info = json.loads((adapter / "training.json").read_text())
    defaults = TrainConfig(corpus="x").to_dict()
    assert {k: info["config"][k] for k in RECIPE_KEYS} == {k: defaults[k] for k in RECIPE_KEYS}
    assert info["status"] in ("finished", "early-stopped") and info["memorisation"]["passes"]
    assert f"{info['val_ppl']:.2f}" in (adapter / "MODEL_CARD.md").read_text()
