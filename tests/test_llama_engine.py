"""The llama.cpp engine on a tiny Llama written as GGUF (its logits can be checked
against the transformers engine one to one), the GGUF LoRA conversion, engine
selection, and one real-model test: perplexity within 2% of the transformers engine."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

from batplots.model.engine import EngineSpec, Settings, load_engine
from batplots.model.engine import gguf_lora, selfcheck
from batplots.model.engine.base import Cancelled, EngineError
from batplots.model.engine.llama_engine import LlamaEngine, text_pieces
from batplots.model.engine.transformers_engine import TransformersEngine
from batplots.model.weights import ModelError
from batplots.story import passage as passagelib
from batplots.story.passage import Passage, consume
from tests import tiny
from tests.tiny_gguf import write_gguf

pytest.importorskip("llama_cpp")

STORY = "Batman and Robin slide down the Batpoles. The Joker laughs at the museum."
# How long the test waits for a finished scoring thread's OpenMP team to exit.
THREAD_EXIT_SECONDS = 30.0  # generous: only a run that fails waits it out
# Q4_1 keeps 4 bits a weight: the merged logits drift further than Q8_0's.
TOLERANCE_Q4_1 = 0.25
ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def engine(tiny_gguf):
    eng = LlamaEngine(tiny_gguf, label="tiny", n_ctx=1024, n_slots=4)
    yield eng
    eng.close()


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def test_tokens_and_logits_match_the_transformers_model(engine):
    tok = tiny.tokenizer()
    text = STORY + " Holy haberdashery, caf\u00e9 \U0001F987!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert engine.encode(text) == ids and engine.count_tokens(text) == len(ids)
    diff = np.abs(engine.logits(ids) - hf_logits(tiny.trained_llama(), ids)).max()
    assert diff < 0.02, diff  # f32 weights both sides; llama.cpp keeps K/V in f16


def _os_threads() -> set[str]:
    import os

    return set(os.listdir(f"/proc/{os.getpid()}/task"))


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_scoring_leaves_no_llama_threads_behind(tiny_gguf):
    """logits() runs llama.cpp on a thread that exits: an OpenMP team left behind by
    the caller's thread slowed every later decode step 2.3x (libgomp stops spinning
    once there are more team threads than cores)."""
    engine = LlamaEngine(tiny_gguf, label="tiny", n_ctx=256, n_slots=1, n_threads=2)
    try:
        ids = tiny.tokenizer()(STORY, add_special_tokens=False)["input_ids"]
        before = _os_threads()
        first = engine.logits(ids)
        # The scoring thread's team may still be on its way out: wait (bounded) for it.
        deadline = time.monotonic() + THREAD_EXIT_SECONDS
        while _os_threads() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (_os_threads() - before), "logits() left threads running"
        np.testing.assert_array_equal(engine.logits(ids), first)
        with pytest.raises(EngineError, match="logits\\(\\) takes 1 to"):
            engine.logits([])
    finally:
        engine.close()


def test_greedy_generation_matches_the_transformers_engine(engine):
    ref = TransformersEngine(tiny.trained_llama(), tiny.tokenizer(), label="tiny")
    for penalty in (1.0, 1.3):
        settings = Settings(temperature=0, repetition_penalty=penalty, max_new_tokens=24)
        ours = "".join(engine.pieces("Batman and Robin", settings, 1, None))
        theirs = "".join(ref.pieces("Batman and Robin", settings, 1, None))
        assert ours == theirs and ours.strip()


def test_top_k_one_is_greedy_and_seeds_reproduce(engine):
    greedy = "".join(engine.pieces(STORY, Settings(temperature=0, max_new_tokens=16), 5, None))
    top1 = "".join(engine.pieces(STORY, Settings(temperature=1.5, top_k=1, max_new_tokens=16), 5, None))
    assert top1 == greedy
    hot = Settings(temperature=1.8, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=40)
    runs = {seed: "".join(engine.pieces(STORY, hot, seed, None)) for seed in (1, 2, 3)}
    assert len(set(runs.values())) > 1  # different seeds, different text
    assert "".join(engine.pieces(STORY, hot, 2, None)) == runs[2]  # same seed, same text (warm cache)


def test_continuation_has_exactly_n_sentences_and_streams_per_token(engine):
    draft, result = consume(Passage(engine, STORY, Settings(sentences=3, seed=11, temperature=0.5)))
    assert len(result.sentences) == 3 and draft == result.text and result.text.startswith(" ")
    assert result.first_piece_seconds is not None and result.tokens > 3
    again = passagelib.run(engine, STORY, Settings(sentences=3, seed=11, temperature=0.5))
    assert again.text == result.text


def test_end_of_text_is_never_generated(tmp_path):
    # EOS's output row points along the model's average final hidden state, so EOS
    # becomes by far the likeliest token: only the logit bias keeps it out.
    model = tiny.trained_llama()
    ids = tiny.tokenizer()(STORY, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].numpy()
    mean = hidden.mean(axis=0)
    path = write_gguf(model, tmp_path / "eos.gguf", eos_row=50 * mean / np.dot(mean, mean))
    eng = LlamaEngine(path, n_ctx=512, n_slots=2)
    try:
        eos = tiny.tokenizer().eos_token_id
        assert np.argmax(eng.logits(ids)[-1]) == eos
        pieces = list(eng.pieces(STORY, Settings(temperature=0, max_new_tokens=30), 0, None))
        assert len(pieces) == 30 and "<|endoftext|>" not in "".join(pieces) and "".join(pieces).strip()
    finally:
        eng.close()


def test_multibyte_characters_are_never_split(engine):
    text = "caf\u00e9 \U0001F987 \u00bfqu\u00e9?"
    tokens = engine.encode(text)
    pieces = list(text_pieces(engine.piece(t) for t in tokens))
    assert "".join(pieces) == text and len(pieces) == len(tokens)
    assert "" in pieces  # the bat emoji spans several byte tokens: those before its last give ""
    assert all("\ufffd" not in p for p in pieces)


def test_the_kv_cache_of_the_unchanged_prefix_is_reused(engine):
    sched = engine.scheduler
    first = passagelib.run(engine, STORY, Settings(sentences=2, seed=3))
    evaluated, reused = sched.prompt_tokens_evaluated, sched.prompt_tokens_reused
    story = STORY + first.text + " Robin cries, \"Holy haberdashery, Batman!\""
    passagelib.run(engine, story, Settings(sentences=1, seed=4))
    new_eval = sched.prompt_tokens_evaluated - evaluated
    new_reused = sched.prompt_tokens_reused - reused
    # Only the text after the cached story (the user's new sentence, and the last
    # generated token that was never evaluated) is read again.
    assert new_reused >= engine.count_tokens(STORY + first.text) - 2
    assert new_eval <= engine.count_tokens(" Robin cries, \"Holy haberdashery, Batman!\"") + 3
    # A different story takes another slot and leaves this one's cache alone.
    passagelib.run(engine, "Alfred serves tea in the study.", Settings(sentences=1, seed=5))
    cached = [engine.cached_tokens(s) for s in range(engine.n_slots)]
    assert any(c[:len(engine.encode(story))] == engine.encode(story) for c in cached)


def test_reset_cache_makes_the_next_continuation_start_from_nothing(engine):
    sched = engine.scheduler
    engine.reset_cache()
    fresh = passagelib.run(engine, STORY, Settings(sentences=2, seed=11))
    passagelib.run(engine, "Alfred serves tea in the study.", Settings(sentences=1, seed=5))
    passagelib.run(engine, STORY, Settings(sentences=1, seed=12))
    engine.reset_cache()
    assert all(engine.cached_tokens(s) == [] for s in range(engine.n_slots))
    reused = sched.prompt_tokens_reused
    gen = engine.pieces(STORY, Settings(), 1, None)
    next(gen)
    gen.close()
    assert sched.prompt_tokens_reused == reused  # the story was read afresh, not from a cache
    engine.reset_cache()
    assert passagelib.run(engine, STORY, Settings(sentences=2, seed=11)).text == fresh.text


def test_cancel_stops_between_tokens_and_the_engine_carries_on(engine):
    cancel = threading.Event()
    gen = engine.pieces(STORY, Settings(max_new_tokens=200), 1, cancel)
    next(gen)
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in gen:
            pass
    assert len(passagelib.run(engine, STORY, Settings(sentences=1, seed=1)).sentences) == 1


def test_concurrent_generations_are_batched_and_all_answered(engine):
    results, errors = {}, []

    def write(i):
        try:
            results[i] = passagelib.run(engine, f"{STORY} Story {i}.", Settings(sentences=2, seed=i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 6
    assert all(len(r.sentences) == 2 for r in results.values())
    assert engine.scheduler.max_batch_requests > 1  # they shared decode steps


def test_a_prompt_larger_than_the_context_is_a_clear_error(tiny_gguf):
    eng = LlamaEngine(tiny_gguf, n_ctx=256, n_slots=1)
    try:
        with pytest.raises(EngineError, match="exceed this engine's context of 256"):
            list(eng.pieces(STORY * 30, Settings(max_new_tokens=64), 1, None))
        assert passagelib.run(eng, STORY, Settings(sentences=1, seed=2, max_context=256, max_new_tokens=64)).sentences
    finally:
        eng.close()


# --- shared prompts: KV cells shared across slots ------------------------------------------------
# Hot sampling: any difference in the logits shows up in the text.
HOT = Settings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=24)
TAKES = 4
WAIT_SECONDS = 60.0  # bound on every wait below: a hang fails the test instead


def _request(engine, ids, seed, max_new=HOT.max_new_tokens, cancel=None):
    """A scheduler request as engine.pieces builds it (sampler seeded, prompt accepted)."""
    from batplots.model.engine.llama_batch import Request

    sampler = engine._sampler(HOT, seed)
    for token in ids[-256:]:
        sampler.accept(token)
    return Request(ids=list(ids), max_new=max_new, sampler=sampler, cancel=cancel)


def _tokens(req) -> list[int]:
    out = []
    while True:
        kind, value = req.out.get(timeout=WAIT_SECONDS)
        if kind == "done":
            return out
        assert kind == "token", (kind, value)
        out.append(value)


def _alone(engine, ids, seed, max_new=HOT.max_new_tokens) -> list[int]:
    engine.reset_cache()
    req = _request(engine, ids, seed, max_new)
    engine.scheduler.submit(req)
    return _tokens(req)


@pytest.mark.parametrize("settings", [HOT, Settings(temperature=0, max_new_tokens=40)], ids=["hot", "greedy"])
def test_takes_of_one_prompt_read_it_once_and_write_as_if_alone(engine, settings):
    sched = engine.scheduler
    prompt = " ".join([STORY] * 16)
    n = engine.count_tokens(prompt)
    alone = {}
    for seed in range(TAKES):
        engine.reset_cache()
        alone[seed] = list(engine.pieces(prompt, settings, seed, None))
    engine.reset_cache()
    evaluated, reused = sched.prompt_tokens_evaluated, sched.prompt_tokens_reused
    together, errors = {}, []
    barrier = threading.Barrier(TAKES)

    def take(seed):
        try:
            barrier.wait(WAIT_SECONDS)
            together[seed] = list(engine.pieces(prompt, settings, seed, None))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(seed,)) for seed in range(TAKES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_SECONDS)
    assert not errors and len(together) == TAKES
    # Read once, plus each take's last prompt token (always decoded by its own request).
    assert sched.prompt_tokens_evaluated - evaluated == n + TAKES - 1
    assert sched.prompt_tokens_reused - reused == (TAKES - 1) * (n - 1)
    assert sched.max_batch_requests > 1
    # Shared cells hold the very keys and values a take would compute itself: its first
    # token is drawn from the same logits as alone. Later tokens are decoded in steps
    # shared with the other takes, whose float sums can flip a near tie under hot
    # sampling (seed 2 here, at its 8th token, with or without shared cells: measured
    # the same against the scheduler before sharing); greedy holds exactly.
    assert all(together[seed][0] == alone[seed][0] for seed in range(TAKES))
    if settings.temperature == 0:
        assert together == alone


def test_a_request_waits_for_the_reader_of_its_prompt_and_lets_others_pass(engine):
    sched = engine.scheduler
    ids = engine.encode(" ".join([STORY] * 16))
    other = engine.encode("Alfred serves tea in the study.")
    want = _alone(engine, ids, 2)
    engine.reset_cache()
    reader, waiter, stranger = _request(engine, ids, 1), _request(engine, ids, 2), _request(engine, other, 3)
    with sched._cond:  # the scheduler thread is idle: admit by hand, all at once
        sched._pending += [reader, waiter, stranger]
        sched._admit()
        assert sched._active == [reader, stranger] and sched._pending == [waiter]
        sched._cond.notify_all()
    sched.submit(_request(engine, other, 4, max_new=1))  # wakes the scheduler
    assert len(_tokens(reader)) == len(_tokens(stranger)) == HOT.max_new_tokens
    got = _tokens(waiter)  # decoded beside the reader: only its first token is sure to match
    assert got[0] == want[0] and len(got) == len(want) and waiter.reused == len(ids) - 1


def test_cancelling_the_reader_lets_the_waiters_in(engine):
    sched = engine.scheduler
    ids = engine.encode(" ".join([STORY] * 38))  # longer than a batch: read in two steps
    assert sched.n_batch < len(ids) and 2 * len(ids) > sched.n_ctx  # two unshared copies would not fit
    cancel = threading.Event()
    reader = _request(engine, ids, 1, max_new=8, cancel=cancel)
    waiters = [_request(engine, ids, seed, max_new=8) for seed in (2, 3)]
    with sched._cond:
        sched._pending += [reader, *waiters]
        sched._admit()
        assert sched._active == [reader] and reader.todo
        cancel.set()  # dropped at the scheduler's next look, before its prompt is read
        sched._cond.notify_all()
    sched.submit(_request(engine, [ids[0]], 4, max_new=1))
    assert reader.out.get(timeout=WAIT_SECONDS) == ("cancelled", None)
    for req in waiters:
        assert len(_tokens(req)) == 8
    # The first waiter read the prompt (what the reader had read of it, if anything, it
    # reused); the second waited for it and shared its cells, and they decoded together
    # although two unshared copies would not fit.
    assert waiters[0].reused in (0, sched.n_batch) and waiters[1].reused == len(ids) - 1
    assert sched.max_batch_requests == 2


def test_a_prompt_sharing_an_idle_slots_prefix_shares_its_cells(engine):
    import llama_cpp

    sched = engine.scheduler
    ids = engine.encode(" ".join([STORY] * 8))
    _alone(engine, ids, 1)
    (held,) = [s for s in sched.slots if s.tokens]
    kept = list(held.tokens)
    branch = ids + engine.encode(" Alfred serves tea in the study.")
    common = next(i for i, (a, b) in enumerate(zip(kept, branch)) if a != b)
    before = sched.prompt_tokens_evaluated
    req = _request(engine, branch, 2)
    sched.submit(req)
    got = _tokens(req)
    # The idle slot keeps its whole cache; the new request got its prefix in an empty slot.
    assert held.tokens == kept and sched.slots[req.slot] is not held
    assert req.reused == common and sched.prompt_tokens_evaluated - before == len(branch) - common
    with sched._cond:
        mine = sched.slots[req.slot].tokens  # the branch and its new tokens (but the last)
        assert sched._used_cells() == len(kept) + len(mine) - common  # shared cells counted once
        sched._trim(held, 0)  # its cells go; those the other slot shares stay
        assert llama_cpp.llama_memory_seq_pos_max(engine._ctx.memory, held.seq) == -1
        assert llama_cpp.llama_memory_seq_pos_min(engine._ctx.memory, req.slot) == 0
    assert got == _alone(engine, branch, 2)  # shared or read afresh: same text


def test_idle_caches_are_evicted_when_a_prompt_needs_their_cells(tiny_gguf):
    eng = LlamaEngine(tiny_gguf, label="tiny", n_ctx=512, n_slots=3)
    try:
        sched = eng.scheduler
        ids = eng.encode(" ".join([STORY] * 8))
        _alone(eng, ids, 1)
        req = _request(eng, ids + eng.encode(" Alfred serves tea."), 2)
        sched.submit(req)
        _tokens(req)
        big = eng.encode(" ".join(["Holy haberdashery, Batman!"] * 40))[:sched.n_ctx - 2 * HOT.max_new_tokens]
        want = _alone(eng, big, 3)
        eng.reset_cache()
        _alone(eng, ids, 1)
        sched.submit(req := _request(eng, ids + eng.encode(" Alfred serves tea."), 2))
        _tokens(req)
        used = sched._used_cells()
        assert used < sum(len(s.tokens) for s in sched.slots)  # the two stories share cells
        assert used + len(big) + HOT.max_new_tokens > sched.n_ctx
        sched.submit(req := _request(eng, big, 3))
        assert _tokens(req) == want
        assert sum(len(s.tokens) for s in sched.slots) == len(big) + HOT.max_new_tokens - 1
    finally:
        eng.close()


# --- the GGUF LoRA ---------------------------------------------------------------------------
def make_adapter(path, targets=ALL_MODULES, scale=0.5, seed=0, build=tiny.llama, **config):
    from peft import LoraConfig, get_peft_model

    base = build(seed=0)
    torch.manual_seed(seed)  # after the base, which seeds torch itself
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                               init_lora_weights=False, **config))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    peft_model.save_pretrained(path)
    return path


@pytest.mark.parametrize("repack", [False, True], ids=["repack-off", "repack-on"])
@pytest.mark.parametrize("fmt,targets,scale,config,tolerance", [
    ("lora", ALL_MODULES, 0.5, {}, 0.02),
    ("lora", ["q_proj", "k_proj"], 3.0, {"use_rslora": True}, 0.02),
    ("q8_0", ALL_MODULES, 0.5, {}, 0.1),  # merged and re-quantised to 8 bits
    ("q4_1", ALL_MODULES, 0.5, {}, TOLERANCE_Q4_1),  # the embedded base's own format
    ("f16", ["q_proj", "k_proj"], 3.0, {"use_rslora": True}, 0.03),
])
def test_converted_adapters_give_the_merged_adapters_logits(tmp_path, fmt, targets, scale, config, tolerance,
                                                            repack):
    # q/k alone check the rotary row order of B; rsLoRA checks the folded scaling.
    adapter = make_adapter(tmp_path / "adapter", targets, scale, **config)
    base = write_gguf(tiny.llama(seed=0), tmp_path / "base.gguf")
    converted = gguf_lora.ensure_format(adapter, base, fmt)
    files = (base, converted) if fmt == "lora" else (converted, None)
    if repack:  # weight repacking on, where this CPU's llama.cpp survives it (a probe child tells)
        attempt = selfcheck.run_probe(selfcheck.probe_command(*files, True), "repack")
        if attempt.outcome == "signal":
            pytest.skip(f"llama.cpp dies with weight repacking on this CPU ({attempt.detail}); "
                        "test_selfcheck covers the fallback")
        assert attempt.outcome == "ok", attempt
    ids = tiny.tokenizer()(STORY, add_special_tokens=False)["input_ids"]
    from peft import PeftModel

    merged = PeftModel.from_pretrained(tiny.llama(seed=0), str(adapter)).merge_and_unload()
    want, bare_want = hf_logits(merged, ids), hf_logits(tiny.llama(seed=0), ids)
    assert np.abs(want - bare_want).max() > 0.3  # the adapter matters
    ours = LlamaEngine(*files, n_ctx=256, n_slots=1, repack=repack)
    bare = LlamaEngine(base, n_ctx=256, n_slots=1, repack=repack)
    try:
        assert ours.describe()["repack"] is repack
        assert np.abs(ours.logits(ids) - want).max() < tolerance
        assert np.abs(bare.logits(ids) - bare_want).max() < 0.02
        assert ours.encode(STORY) == ids  # the merged file keeps the tokenizer
        # Generation runs in this configuration too (the untrained tiny model ends no sentence).
        decoded = list(ours.pieces(STORY, Settings(temperature=0.0, max_new_tokens=16), seed=0, cancel=None))
        assert len(decoded) == 16 and "".join(decoded).strip()
    finally:
        ours.close()
        bare.close()


@pytest.mark.parametrize("fmt,tolerance", [("lora", 0.02), ("q8_0", 0.1)])
def test_qwen2_adapters_convert_without_the_llama_row_reorder(tmp_path, fmt, tolerance):
    # The 1.5B base is a qwen2 GGUF: same module names, q/k biases, and q/k rows kept in
    # Hugging Face order (reordering them like llama's would scramble the adapter's delta).
    adapter = make_adapter(tmp_path / "adapter", ALL_MODULES, 0.5, build=tiny.qwen2)
    base = write_gguf(tiny.qwen2(seed=0), tmp_path / "base.gguf")
    converted = gguf_lora.ensure_format(adapter, base, fmt)
    files = (base, converted) if fmt == "lora" else (converted, None)
    ids = tiny.tokenizer()(STORY, add_special_tokens=False)["input_ids"]
    from peft import PeftModel

    merged = PeftModel.from_pretrained(tiny.qwen2(seed=0), str(adapter)).merge_and_unload()
    want, bare_want = hf_logits(merged, ids), hf_logits(tiny.qwen2(seed=0), ids)
    assert np.abs(want - bare_want).max() > 0.3  # the adapter matters
    ours = LlamaEngine(*files, n_ctx=256, n_slots=1, repack=False)
    bare = LlamaEngine(base, n_ctx=256, n_slots=1, repack=False)
    try:
        assert np.abs(bare.logits(ids) - bare_want).max() < 0.02  # the biases are in the file
        assert np.abs(ours.logits(ids) - want).max() < tolerance
    finally:
        ours.close()
        bare.close()


def test_gguf_lora_is_cached_by_the_adapters_hash(tmp_path, batplots_home):
    adapter = make_adapter(tmp_path / "adapter")
    base = write_gguf(tiny.llama(seed=0), tmp_path / "base.gguf")
    first = gguf_lora.ensure_format(adapter, base, "lora")
    assert first.parent == batplots_home / gguf_lora.CACHE_SUBDIR and first.name.startswith("adapter-")
    stamp = first.stat().st_mtime_ns
    assert gguf_lora.ensure_format(adapter, base, "lora") == first and first.stat().st_mtime_ns == stamp
    merged = gguf_lora.ensure_format(adapter, base, "q8_0")
    assert merged.parent == batplots_home / gguf_lora.MERGED_SUBDIR and merged.name.endswith("-q8_0.gguf")
    merged_stamp = merged.stat().st_mtime_ns
    assert gguf_lora.ensure_format(adapter, base, "q8_0").stat().st_mtime_ns == merged_stamp
    make_adapter(tmp_path / "adapter", seed=1)  # retrained: new weights, new files
    second = gguf_lora.ensure_format(adapter, base, "lora")
    assert second != first and second.is_file()
    assert gguf_lora.ensure_format(adapter, base, "q8_0") != merged
    assert not list(first.parent.glob("*.tmp")) and not list(merged.parent.glob("*.tmp"))


def test_adapters_llama_cpp_cannot_run_are_refused_clearly(tmp_path):
    base = write_gguf(tiny.llama(seed=0), tmp_path / "base.gguf")
    embed = make_adapter(tmp_path / "embed", ["embed_tokens", "q_proj"])
    with pytest.raises(ModelError, match="cannot be converted to a llama.cpp LoRA.*--engine transformers"):
        gguf_lora.ensure_format(embed, base, "lora")
    dora = make_adapter(tmp_path / "dora", ["q_proj"], use_dora=True)
    with pytest.raises(ModelError, match="DoRA"):
        gguf_lora.ensure_format(dora, base, "q8_0")
    with pytest.raises(ModelError, match="unknown adapter format 'q2'; choose one of: q8_0, q4_1, f16, lora"):
        gguf_lora.ensure_format(make_adapter(tmp_path / "plain"), base, "q2")


# --- choosing the engine ----------------------------------------------------------------------
def test_engine_selection(tmp_path):
    hf_dir = tmp_path / "tiny-hf"
    tiny.trained_llama().save_pretrained(hf_dir)
    tiny.tokenizer().save_pretrained(hf_dir)
    auto_hf = load_engine(EngineSpec(base=str(hf_dir), adapter="none"))
    assert isinstance(auto_hf, TransformersEngine)  # a Hugging Face directory: llama.cpp cannot run it
    with pytest.raises(ModelError, match="--engine llama runs GGUF models"):
        load_engine(EngineSpec(engine="llama", base=str(hf_dir), adapter="none"))
    gguf = write_gguf(tiny.trained_llama(), tmp_path / "tiny.gguf")
    fast = load_engine(EngineSpec(base=str(gguf), adapter="none"))
    assert isinstance(fast, LlamaEngine) and fast.describe()["base"] == "tiny"
    fast.close()
    with pytest.raises(ModelError, match="--base-url and --model are for --engine openai"):
        load_engine(EngineSpec(base=str(gguf), adapter="none", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ModelError, match="--engine openai needs --base-url"):
        load_engine(EngineSpec(engine="openai", adapter="none"))


def test_auto_uses_llama_for_the_embedded_model():
    eng = load_engine(EngineSpec(adapter="none"))
    try:
        assert isinstance(eng, LlamaEngine)
        assert eng.describe()["gguf"].endswith(".gguf") and eng.describe()["lora"] is None
    finally:
        eng.close()


# --- the real model: quality does not change ------------------------------------------------------
PERPLEXITY_TOKENS = 300
MAX_PERPLEXITY_GAP = 0.02


@pytest.mark.real_model
def test_fast_engine_perplexity_is_within_2_percent_of_transformers(real_home, shared_corpus, tmp_path):
    from batplots.model import weights as modellib

    adapter = modellib.default_adapter("fast")  # the 135M's (the 1.5B's is test_bases')
    if adapter is None:  # before the default adapter ships: a fresh LoRA on the real base
        from peft import LoraConfig, get_peft_model

        base_model, _, _ = modellib.load_base("fast")
        torch.manual_seed(0)
        peft_model = get_peft_model(base_model, LoraConfig(r=8, lora_alpha=16, target_modules=ALL_MODULES,
                                                           init_lora_weights=False))
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(0.3)
        adapter = tmp_path / "fresh"
        peft_model.save_pretrained(adapter)
    # The held-out tail of the shared corpus (the adapter trains on what comes before).
    text = shared_corpus.read_text()[-3000:]
    fast = load_engine(EngineSpec(engine="llama", base="fast", adapter=str(adapter)))
    slow = load_engine(EngineSpec(engine="transformers", base="fast", adapter=str(adapter)))
    ids = slow.encode(text)[:PERPLEXITY_TOKENS]

    def perplexity(logits):
        logits = torch.tensor(logits[:-1])
        return float(torch.exp(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]))))

    ppl_fast, ppl_slow = perplexity(fast.logits(ids)), perplexity(hf_logits(slow.model, ids))
    print(json.dumps({"adapter": str(adapter), "tokens": len(ids), "ppl_llama": ppl_fast, "ppl_transformers": ppl_slow}))
    assert abs(ppl_fast - ppl_slow) / ppl_slow < MAX_PERPLEXITY_GAP
    # And it is the adapted model: the bare base scores differently.
    bare = load_engine(EngineSpec(engine="llama", base="fast", adapter="none"))
    assert abs(perplexity(bare.logits(ids)) - ppl_fast) / ppl_fast > 0.005
    for eng in (fast, bare):
        eng.close()
    # The conversion happened once, into the cache; loading again reuses it.
    merged = gguf_lora.cached_path(adapter, gguf_lora.DEFAULT_FORMAT, modellib.embedded_gguf())
    assert fast.describe()["gguf"] == merged.name
    stamp = merged.stat().st_mtime_ns
    again = load_engine(EngineSpec(engine="llama", base="fast", adapter=str(adapter)))
    assert again.describe()["gguf"] == merged.name and merged.stat().st_mtime_ns == stamp
    again.close()


def test_thread_count_defaults_to_the_cores_and_can_be_set(monkeypatch):
    from batplots.model.engine import llama_engine
    from batplots.model.weights import ModelError

    monkeypatch.delenv(llama_engine.THREADS_ENV, raising=False)
    monkeypatch.setattr(llama_engine.os, "cpu_count", lambda: 2)
    assert llama_engine.default_threads() == 2
    monkeypatch.setattr(llama_engine.os, "cpu_count", lambda: 64)
    assert llama_engine.default_threads() == llama_engine.MAX_DEFAULT_THREADS
    monkeypatch.setenv(llama_engine.THREADS_ENV, "1")
    assert llama_engine.default_threads() == 1
    monkeypatch.setenv(llama_engine.THREADS_ENV, "two")
    with pytest.raises(ModelError, match="BATPLOTS_THREADS must be a whole number of threads from 1 up, got 'two'"):
        llama_engine.default_threads()


def test_gguf_command_writes_a_runnable_merged_model_and_a_lora(tmp_path, batplots_home):
    from click.testing import CliRunner

    from batplots.cli.main import main

    adapter = make_adapter(tmp_path / "adapter")
    base = write_gguf(tiny.llama(seed=0), tmp_path / "base.gguf")
    runner = CliRunner()
    out = tmp_path / "served" / "batman.gguf"
    out.parent.mkdir()
    result = runner.invoke(main, ["gguf", "--base", str(base), "--adapter", str(adapter), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and not list(out.parent.glob("*.tmp"))
    assert out.read_bytes() == gguf_lora.ensure_format(adapter, base, "q8_0").read_bytes()
    served = LlamaEngine(out, n_ctx=256, n_slots=1)
    try:
        assert passagelib.run(served, STORY, Settings(sentences=1, seed=2, max_new_tokens=8)).tokens == 8  # llama.cpp runs it
    finally:
        served.close()
    lora = tmp_path / "batman-lora.gguf"
    assert runner.invoke(main, ["gguf", "--base", str(base), "--adapter", str(adapter), "--format", "lora",
                                "--out", str(lora)]).exit_code == 0
    assert lora.read_bytes() == gguf_lora.ensure_format(adapter, base, "lora").read_bytes()
    result = runner.invoke(main, ["gguf", "--base", str(base), "--adapter", "none", "--format", "lora",
                                  "--out", str(lora)])
    assert result.exit_code == 1 and "--format lora needs an adapter" in result.output
    result = runner.invoke(main, ["gguf", "--base", str(tmp_path), "--out", str(lora)])
    assert result.exit_code == 1 and "give a .gguf file" in result.output
