"""Fine-tuning with a validation split, early stopping and resumable checkpoints.

`main(TrainConfig(corpus=..., out=...))` (or `batplots train`) reads and splits
the corpus (batplots.train.dataset), measures the bare base on the held-out part,
trains LoRA (PEFT) or the chosen layers in full, evaluates validation loss at
regular intervals, keeps the best weights, stops after `patience` evaluations
without improvement, and writes the best adapter with training.json, loss.png
and MODEL_CARD.md (batplots.train.report). Ctrl-C saves a checkpoint and returns;
`resume=True` continues from it with the same data order, step for step.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from batplots.corpus.split import split_corpus
from batplots.train import dataset
from batplots.train import report as trainreport
from batplots.model import weights as modellib
from batplots.files import default_file_mode
from batplots.train.layercache import CHECK_TOLERANCE, FrozenBottom, find_layers
from batplots.train.config import ConfigError, TrainConfig, parse_layers

CHECKPOINT = "checkpoint.pt"
# The learning rate decays (cosine) to this share of its peak over the planned steps.
FINAL_LR_SHARE = 0.1
# Evaluations per epoch when eval_every is 0: on a small corpus validation loss
# turns within half an epoch, and with the frozen layers cached an evaluation is cheap.
EVALS_PER_EPOCH = 4


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


@dataclass
class TrainResult:
    status: str  # "finished", "early-stopped", "max-steps" or "interrupted"
    out: Path
    summary: dict  # what training.json holds
    model: object = None  # the trained model with the best weights loaded (None when interrupted)
    tokenizer: object = None


@dataclass
class _State:
    """What a checkpoint must hold to continue exactly where a run stopped."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # index of the next batch within the epoch
    tokens: int = 0
    train_seconds: float = 0.0
    elapsed: float = 0.0  # wall time before this process (resumed runs)
    train_log: list = field(default_factory=list)  # [step, epoch, loss]
    evals: list = field(default_factory=list)
    best: dict | None = None
    bad_evals: int = 0
    base_eval: dict | None = None


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (weights stay fp32 for the optimizer); plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@torch.no_grad()
def evaluate(model, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
             forward: Callable | None = None) -> dict:
    """Token-weighted validation loss and perplexity over every held-out token.
    batches: (inputs, labels) with -100 on padding; forward(model, inputs) -> logits
    (default: the inputs are token ids for a full forward)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for inputs, labels in batches:
        inputs, labels = inputs.to(device), labels.to(device)
        with autocast(device):
            logits = forward(model, inputs) if forward else model(input_ids=inputs, use_cache=False).logits
        shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
        shift_labels = labels[:, 1:].reshape(-1)
        total += float(torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100,
                                                         reduction="sum"))
        count += int((shift_labels != -100).sum())
    model.train(was_training)
    loss = total / count
    return {"loss": round(loss, 5), "ppl": round(math.exp(loss), 3), "tokens": count}


def resolve_targets(model, spec: str) -> list[str]:
    """Module names to adapt: all-linear = every linear layer inside the transformer blocks."""
    if spec.strip() != "all-linear":
        return [t.strip() for t in spec.split(",") if t.strip()]
    from transformers.pytorch_utils import Conv1D

    _, _, blocks = find_layers(model)
    return sorted({name.rsplit(".", 1)[-1] for name, module in blocks.named_modules()
                   if isinstance(module, (torch.nn.Linear, Conv1D))})


def prepare_model(model, cfg: TrainConfig, layers: list[int] | None):
    """Wrap the base for training: a PEFT LoRA model, or the chosen layers unfrozen."""
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = resolve_targets(model, cfg.target_modules)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          task_type="CAUSAL_LM", target_modules=targets, layers_to_transform=layers)
        try:
            with modellib.quiet_peft():
                return get_peft_model(model, lora)
        except ValueError as exc:
            raise ConfigError(f"--target-modules {cfg.target_modules!r}: {exc}") from exc
    for p in model.parameters():
        p.requires_grad_(False)
    _, _, blocks = find_layers(model)
    for i in layers if layers is not None else range(len(blocks)):
        for p in blocks[i].parameters():
            p.requires_grad_(True)
    return model


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def _atomic_torch_save(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(model, tokenizer, cfg: TrainConfig, out: Path, base_label: str) -> None:
    """Save the adapter (or the full model) into out, file by file via os.replace, so a
    crash never leaves a half-written file where a good one was."""
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=out))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if cfg.method == "lora":
            # Name the base as the user gave it (or the embedded model's name), not a cache path on this machine.
            adapter_config = tmp / "adapter_config.json"
            data = json.loads(adapter_config.read_text(encoding="utf-8"))
            data["base_model_name_or_path"] = cfg.base or base_label
            if isinstance(data.get("target_modules"), list):  # peft keeps a set: same run, same file
                data["target_modules"] = sorted(data["target_modules"])
            adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if cfg.method == "full":
            tokenizer.save_pretrained(tmp)
        (tmp / "README.md").unlink(missing_ok=True)  # PEFT's stub card; MODEL_CARD.md is ours
        mode = default_file_mode()  # safetensors writes its file private (0600)
        for path in sorted(tmp.iterdir()):
            path.chmod(mode)
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Interrupt:
    """Ctrl-C during training asks for a checkpoint at the end of the current step; a
    second Ctrl-C stops at once (KeyboardInterrupt)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C is the caller's business
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _load_checkpoint(cfg: TrainConfig) -> tuple[TrainConfig, dict]:
    out = Path(cfg.out).expanduser()
    path = out / CHECKPOINT
    if not path.is_file():
        raise TrainError(f"--resume: there is no {CHECKPOINT} in {out}; nothing to continue "
                         "(start a new run without --resume)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    saved = TrainConfig.from_dict({"header": False} | ckpt["config"])  # runs from before --header had none
    saved.resume, saved.progress, saved.out = True, cfg.progress, str(out)
    if cfg.corpus:
        saved.corpus = cfg.corpus  # the corpus may have moved; its sha256 is checked below
    return saved, ckpt


def main(config: TrainConfig, on_step: Callable | None = None) -> TrainResult:
    """Train as config says. on_step(step, epoch, window_starts, loss) is called after each
    optimizer step (tests use it to watch the data order and to send Ctrl-C)."""
    config.validate()
    ckpt = None
    if config.resume:
        config, ckpt = _load_checkpoint(config)
    cfg = config
    out = Path(cfg.out).expanduser()
    if ckpt is None and (out / CHECKPOINT).exists():
        raise TrainError(f"{out} holds the checkpoint of an unfinished run: continue it with --resume, "
                         "or choose another --out (nothing was overwritten)")
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)

    split = split_corpus(cfg.corpus, cfg.val_fraction)
    if ckpt is not None and ckpt["corpus_sha256"] != split.sha256:
        raise TrainError(f"--resume: {cfg.corpus} is not the corpus this run started on (sha256 "
                         f"{split.sha256[:12]}... vs {ckpt['corpus_sha256'][:12]}...); resume with the same file")
    from batplots.model.weights import load_base

    model, tokenizer, base_label = load_base(cfg.base)
    packed = dataset.pack(split, tokenizer, cfg.seq_len, dataset.conditioning_for(cfg))
    model.to(device)
    out.mkdir(parents=True, exist_ok=True)
    from batplots.story.lore import write_lore

    write_lore(Path(cfg.corpus), out)  # the corpus's names, for the Writer (names and counts only)
    setup = {"load_s": round(time.perf_counter() - started, 1)}
    if hasattr(os, "getloadavg"):
        setup["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]

    val_batches = packed.val_batches(cfg.batch_size)
    state = _State()
    if ckpt is not None:
        state = _State(**ckpt["state"])
    elif cfg.eval_base:
        tick = time.perf_counter()
        state.base_eval = evaluate(model, val_batches, device)
        setup["base_eval_s"] = round(time.perf_counter() - tick, 1)

    layers = parse_layers(cfg.layers, model.config.num_hidden_layers)
    model = prepare_model(model, cfg, layers)
    model.train()
    bottom, cache_note = _frozen_bottom(model, cfg, layers, packed, device)
    if bottom is not None:
        tick = time.perf_counter()
        with autocast(device):
            train_hidden = torch.cat([bottom.hidden(model, rows.to(device))
                                      for rows in packed.grid().split(cfg.batch_size)])
            val_batches = [(bottom.hidden(model, ids.to(device)), labels) for ids, labels in val_batches]
        setup["cache_s"] = round(time.perf_counter() - tick, 1)
    forward = bottom.logits if bottom is not None else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(packed.epoch_windows / cfg.batch_size)
    planned = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        planned = min(planned, cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, planned))
    eval_every = cfg.eval_every or max(1, steps_per_epoch // EVALS_PER_EPOCH)
    best_weights = None
    if ckpt is not None:
        load_trainable(model, ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        best_weights = ckpt["best_weights"]
        torch.set_rng_state(ckpt["rng"])
        random.setstate(ckpt["py_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"])

    def elapsed() -> float:
        """Wall time of the whole run, loading and caching included, over every resumed part."""
        return state.elapsed + time.perf_counter() - started

    def checkpoint() -> None:
        _atomic_torch_save({
            "config": cfg.to_dict(), "corpus_sha256": split.sha256, "state": state.__dict__ | {"elapsed": elapsed()},
            "trainable": trainable_state(model), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "best_weights": best_weights, "rng": torch.get_rng_state(),
            "py_rng": random.getstate(),
            "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
        }, out / CHECKPOINT)

    def run_eval() -> bool:
        """Evaluate, keep the best, checkpoint; True when patience has run out."""
        nonlocal best_weights
        result = evaluate(model, val_batches, device, forward)
        result |= {"step": state.step, "epoch": round(state.epoch + state.batch / steps_per_epoch, 3),
                   "elapsed_s": round(elapsed(), 1)}
        state.evals.append(result)
        if state.best is None or result["loss"] < state.best["loss"] - cfg.min_delta:
            state.best, state.bad_evals = dict(result), 0
            best_weights = trainable_state(model)
            save_weights(model, tokenizer, cfg, out, base_label)
        else:
            state.bad_evals += 1
        checkpoint()
        return state.bad_evals >= cfg.patience

    from tqdm.auto import tqdm

    bar = tqdm(total=planned, initial=state.step, unit="step", disable=not cfg.progress, dynamic_ncols=True)
    status = "finished"
    last_eval_step = state.evals[-1]["step"] if state.evals else -1
    with _Interrupt() as interrupt:
        while status == "finished" and state.epoch < cfg.epochs:
            batches = packed.train_batches(state.epoch, cfg.batch_size, cfg.seed, shift=bottom is None)
            while state.batch < len(batches):
                starts = batches[state.batch]
                tick = time.perf_counter()
                x, y = (t.to(device) for t in packed.windows(starts, state.epoch, cfg.seed))
                with autocast(device):
                    if bottom is not None:
                        loss = bottom.forward(model, train_hidden[starts // cfg.seq_len], labels=x).loss
                    else:
                        loss = model(input_ids=x, labels=y, use_cache=False).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_value = loss.item()
                state.step += 1
                state.batch += 1
                state.tokens += x.numel()
                state.train_seconds += time.perf_counter() - tick
                state.train_log.append([state.step, round(state.epoch + state.batch / len(batches), 4),
                                        round(loss_value, 5)])
                if on_step is not None:
                    on_step(state.step, state.epoch, starts, loss_value)
                if state.batch == len(batches):
                    state.epoch, state.batch = state.epoch + 1, 0
                stop = False
                if state.step % eval_every == 0:
                    stop = run_eval()
                    last_eval_step = state.step
                bar.update(1)
                bar.set_postfix(epoch=f"{state.train_log[-1][1]:.2f}", loss=f"{loss_value:.3f}",
                                val_ppl=f"{state.evals[-1]['ppl']:.2f}" if state.evals else "-",
                                tok_s=f"{state.tokens / max(state.train_seconds, 1e-9):.0f}")
                if stop:
                    status = "early-stopped"
                elif cfg.max_steps and state.step >= cfg.max_steps:
                    status = "max-steps"
                if interrupt.requested and status == "finished":
                    checkpoint()
                    bar.close()
                    summary = {"status": "interrupted", "step": state.step, "epoch": state.epoch,
                               "checkpoint": str(out / CHECKPOINT)}
                    return TrainResult("interrupted", out, summary)
                if status != "finished" or state.batch == 0:
                    break
        if last_eval_step != state.step:
            run_eval()  # the last steps since an evaluation may hold the best weights
    bar.close()
    load_trainable(model, best_weights)
    model.eval()
    wall = elapsed()
    summary = trainreport.summary(cfg, status, split, packed, state, base_label, device, wall,
                                  steps_per_epoch, planned)
    summary["frozen_layer_cache"] = cache_note
    if packed.cond is not None:  # the headers' share of the job, and the held-out perplexity with them
        summary["conditioning"] = dataset.conditioning_report(packed, lambda b: evaluate(model, b, device))
    summary["setup_seconds"] = setup  # this process's share of wall_seconds before the first step
    if cfg.memorisation_samples:
        summary["memorisation"] = measure_memorisation(model, tokenizer, cfg)
    trainreport.write_outputs(out, summary)
    (out / CHECKPOINT).unlink(missing_ok=True)  # finished: the out dir is now a clean adapter
    return TrainResult(status, out, summary, model, tokenizer)


def _frozen_bottom(model, cfg: TrainConfig, layers, packed: dataset.Packed, device):
    """A FrozenBottom when the trained layers start above 0 and caching is exact for this
    model, else None; with a note for training.json saying which and why."""
    if not cfg.cache_frozen or cfg.header:
        return None, "off (--header: the windows change every epoch)" if cfg.header else "off (--no-cache-frozen)"
    if not layers or layers[0] == 0:
        return None, "off (the lowest layer trains, nothing below it is frozen)"
    bottom = FrozenBottom(model, layers[0])
    probe = packed.grid()[:1].to(device)
    with autocast(device):
        diff = bottom.check(model, probe)
    if diff > CHECK_TOLERANCE[device.type]:
        return None, f"off (cached logits differ by {diff:.2g} for this architecture)"
    return bottom, f"on: layers 0-{layers[0] - 1} run once per window (max logit difference {diff:.2g})"


def measure_memorisation(model, tokenizer, cfg: TrainConfig) -> dict:
    """Copying figures for the model card (batplots.measure.memorisation), measured on CPU."""
    from batplots.measure import memorisation
    from batplots.model.engine.transformers_engine import TransformersEngine
    from batplots.corpus.index import load_index

    model.to("cpu", torch.float32)
    engine = TransformersEngine(model, tokenizer, label="trained")
    started = time.perf_counter()
    report, outputs = memorisation.measure(engine, load_index(cfg.corpus), samples=cfg.memorisation_samples,
                                           seed=cfg.seed)
    return report.to_dict() | {"seconds": round(time.perf_counter() - started, 1), "examples": outputs[:3]}


def run_from_cli(config: TrainConfig) -> None:
    """`batplots train`: run, print the figures, map errors to click's (exit 1, usage: 2, Ctrl-C: 130)."""
    import click

    from batplots.corpus.episodes import CorpusError
    from batplots.model.weights import ModelError

    try:
        result = main(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except (CorpusError, ModelError, TrainError) as exc:
        raise click.ClickException(str(exc)) from exc
    s = result.summary
    if result.status == "interrupted":
        click.echo(f"train: interrupted at step {s['step']}; checkpoint saved, continue with "
                   f"`batplots train --out {result.out} --resume`", err=True)
        raise SystemExit(130)
    base = s["base_eval"]["ppl"] if s.get("base_eval") else None
    click.echo(f"train: {result.status} after {s['steps']} steps ({s['wall_seconds']} s on {s['device']['type']}); "
               f"best validation perplexity {s['val_ppl']} at step {s['best_step']} ({s['seconds_to_best']} s)"
               + (f", bare base {base} (ratio {s['ppl_ratio_vs_base']})" if base else ""))
    if s.get("memorisation"):
        m = s["memorisation"]
        click.echo(f"train: copying: {m['copied_share']:.1%} of generated 8-grams in the corpus, longest copied "
                   f"span {m['longest_span_words']} words")
    click.echo(f"train: adapter and report written to {result.out}")


def _command():
    """`python -m batplots.train.finetune ...`: the same options as `batplots train`, without the
    rest of the CLI's imports (the GPU script runs it on a machine with few packages)."""
    import click

    from batplots.train.config import click_options

    @click.command()
    @click_options
    def train(**options):
        """Fine-tune the base model on a corpus: LoRA adapter, training.json, loss.png, MODEL_CARD.md."""
        run_from_cli(TrainConfig(**options))

    return train


if __name__ == "__main__":
    _command()()
