"""The settings of `batplots train`: one commented dataclass, also the CLI's options.

Kept free of torch so that `batplots --help` stays fast. Every field's `help`
metadata is the CLI help text, so the dataclass is the single source of truth;
the resolved settings are saved in training.json next to the adapter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import click

METHODS = ("lora", "full")
DEVICES = ("auto", "cpu", "cuda")
# Named limits, checked by TrainConfig.validate().
MAX_SEQ_LEN = 8192
MIN_SEQ_LEN = 8
MAX_LORA_RANK = 1024
MAX_EPOCHS = 1000
MAX_PATIENCE = 1000


class ConfigError(ValueError):
    """A setting is out of range; the message names the option and what is allowed."""


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything one training run depends on. The defaults are the recipe of the
    shipped batman66 adapter (see README "Training" and its MODEL_CARD.md)."""

    # --- data -------------------------------------------------------------------
    corpus: str = _opt("", "Corpus file: plain text or JSONL from `batplots scrape` (one record per episode with a 'plot').")
    out: str = _opt("runs/batman66", "Output directory for the adapter, training.json, loss.png and MODEL_CARD.md.")
    val_fraction: float = _opt(0.1, "Share held out for validation: whole episodes (JSONL) or the text's tail (plain text).")
    seq_len: int = _opt(256, "Tokens per training window.")
    # Control codes, CTRL style (batplots.story.conditioning): a share of the windows starts with
    # the episode's "[Villain: ... | Cast: ...]" header, and some of their sentences that
    # play a beat get a " [Next: <beat>]" marker before them; the codes are masked out of
    # the loss. On by default, as extra copies on top of every plain window: replacing
    # plain windows with coded ones cost held-out perplexity without a header (44.90 and
    # 45.33 against the plain run's 44.78), while a quarter of the windows again with
    # codes gave 44.32, and 41.49 with the header (docs/training.md).
    header: bool = _opt(True, "Condition training windows on a header (villain, cast) and beat markers.")
    header_share: float = _opt(0.25, "Share of training windows that get the header (the rest stay plain).")
    header_extra: bool = _opt(True, "The headed windows come on top of the plain ones (every window plain, plus "
                                    "--header-share of them again with the header) instead of replacing them.")
    marker_share: float = _opt(0.5, "Share of a headed window's beat-playing sentences that get a [Next: beat] marker.")
    # --- model ------------------------------------------------------------------
    # fast, not the serving default: these defaults are the 135M's recipe (the 1.5B's is in
    # docs/bases.md: 41 minutes here against 5).
    base: str | None = _opt("fast", "Base model: fast (SmolLM2-135M-Instruct), best (Qwen2.5-Coder-1.5B-Instruct; "
                                    "docs/bases.md has its recipe), or a Hugging Face model directory.")
    method: str = _opt("lora", "lora (a small PEFT adapter) or full (fine-tune the chosen layers' weights).", choices=METHODS)
    # Rank barely matters on this corpus (H200 sweep: r64 no better than r16; CPU: r8 all
    # layers 44.78 vs r16 44.72), and r8 on every layer keeps the adapter under 10 MB.
    lora_r: int = _opt(8, "LoRA rank.")
    lora_alpha: int = _opt(16, "LoRA alpha (the update is scaled by alpha / rank).")
    lora_dropout: float = _opt(0.1, "Dropout on the LoRA input.")
    # PEFT's "all-linear" means every linear layer inside the transformer blocks (not lm_head).
    target_modules: str = _opt("all-linear", "Comma-separated module names to adapt (q_proj,v_proj,...) or all-linear.")
    # Every layer: measured on the 2-core CPU, all 30 layers reach perplexity 44.8
    # (0.670x the base) in 7.4 minutes, the top 10 only 49.25 (0.737x) in 4.5 minutes.
    # top:N is the speed option: backward stops at the lowest trained layer, and the
    # frozen layers below run once per window (cache_frozen).
    layers: str = _opt("all", "Which transformer layers to train: all, top:N (the N nearest the output), A-B or a,b,c.")
    # Exact, see batplots/train/layercache.py: the frozen layers below the trained ones run
    # once per window instead of once per step (the window grid then stays fixed).
    cache_frozen: bool = _opt(True, "Compute the frozen layers below the trained ones once per window and reuse them.")
    # --- optimisation ---------------------------------------------------------
    epochs: int = _opt(3, "Epochs (the learning rate decays over them); early stopping may end the run sooner.")
    max_steps: int = _opt(0, "Stop after this many optimizer steps (0 = no cap).")
    batch_size: int = _opt(4, "Windows per optimizer step.")
    lr: float = _opt(1e-3, "Peak learning rate (linear warm-up, then cosine decay to 10% over the planned steps).")
    warmup_steps: int = _opt(10, "Steps of linear learning-rate warm-up.")
    weight_decay: float = _opt(0.0, "AdamW weight decay.")
    grad_clip: float = _opt(1.0, "Clip the gradient norm to this (0 = off).")
    # --- evaluation and early stopping -----------------------------------------
    eval_every: int = _opt(0, "Evaluate validation loss every N steps (0 = four times per epoch).")
    patience: int = _opt(3, "Stop after this many evaluations without a better validation loss.")
    min_delta: float = _opt(0.002, "Validation loss must fall by more than this to count as better.")
    eval_base: bool = _opt(True, "Also measure the bare base model on the validation split (for the ratio).")
    memorisation_samples: int = _opt(20, "Continuations of unseen prompts scored for copying after training (0 = skip).")
    # --- runtime ----------------------------------------------------------------
    seed: int = _opt(0, "Seed for data order, initialisation and dropout (CPU runs are deterministic).")
    device: str = _opt("auto", "auto (CUDA with bf16 when available, else CPU fp32), cpu or cuda.", choices=DEVICES)
    threads: int = _opt(0, "CPU threads for torch (0 = torch's default).")
    resume: bool = _opt(False, "Continue the interrupted run in --out from its checkpoint (same data order).", flag=True)
    progress: bool = _opt(True, "Show a progress bar.")

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the option and its allowed range."""
        def need(ok: bool, name: str, allowed: str):
            if not ok:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: {allowed}")

        need(bool(str(self.corpus).strip()) or self.resume, "corpus", "a corpus file is required")
        need(bool(str(self.out).strip()), "out", "an output directory is required")
        need(0.01 <= self.val_fraction <= 0.5, "val_fraction", "must be 0.01-0.5")
        need(0 <= self.header_share <= 1, "header_share", "must be 0-1")
        need(0 <= self.marker_share <= 1, "marker_share", "must be 0-1")
        need(MIN_SEQ_LEN <= self.seq_len <= MAX_SEQ_LEN, "seq_len", f"must be {MIN_SEQ_LEN}-{MAX_SEQ_LEN}")
        need(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        need(1 <= self.lora_r <= MAX_LORA_RANK, "lora_r", f"must be 1-{MAX_LORA_RANK}")
        need(self.lora_alpha > 0, "lora_alpha", "must be positive")
        need(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        need(bool(self.target_modules.strip()), "target_modules", "name at least one module, or all-linear")
        need(1 <= self.epochs <= MAX_EPOCHS, "epochs", f"must be 1-{MAX_EPOCHS}")
        need(self.max_steps >= 0, "max_steps", "must be 0 (no cap) or more")
        need(self.batch_size >= 1, "batch_size", "must be 1 or more")
        need(0 < self.lr < 1, "lr", "must be between 0 and 1")
        need(self.warmup_steps >= 0, "warmup_steps", "must be 0 or more")
        need(self.weight_decay >= 0, "weight_decay", "must be 0 or more")
        need(self.grad_clip >= 0, "grad_clip", "must be 0 (off) or more")
        need(self.eval_every >= 0, "eval_every", "must be 0 (four times per epoch) or more")
        need(1 <= self.patience <= MAX_PATIENCE, "patience", f"must be 1-{MAX_PATIENCE}")
        need(self.min_delta >= 0, "min_delta", "must be 0 or more")
        need(0 <= self.memorisation_samples <= 1000, "memorisation_samples", "must be 0-1000")
        need(self.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}")
        need(0 <= self.threads <= 1024, "threads", "must be 0 (default) or more")
        parse_layers(self.layers, None)  # syntax only; the range is checked against the model
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_layers(spec: str, num_layers: int | None) -> list[int] | None:
    """Resolve --layers to layer indices (None = all). With num_layers None, check syntax only."""
    text = spec.strip().lower().replace(" ", "")
    if text in ("", "all"):
        return None
    top = text.startswith("top:")
    try:
        if top:
            numbers = [int(text[4:])]
        elif "-" in text:
            numbers = [int(x) for x in text.split("-", 1)]
        else:
            numbers = [int(x) for x in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < (1 if top else 0):
        raise ConfigError(f"--layers {spec!r}: use all, top:N, A-B or a,b,c (layer numbers from 0)")
    if top:
        n = numbers[0]
        if num_layers is not None and n > num_layers:
            raise ConfigError(f"--layers {spec!r}: the model has only {num_layers} layers")
        return None if num_layers is None else list(range(num_layers - n, num_layers))
    layers = list(range(numbers[0], numbers[1] + 1)) if "-" in text else sorted(set(numbers))
    if not layers:
        raise ConfigError(f"--layers {spec!r}: the range is empty")
    if num_layers is not None and layers[-1] >= num_layers:
        raise ConfigError(f"--layers {spec!r}: the model has layers 0-{num_layers - 1}")
    return layers


def click_options(func):
    """Add one click option per TrainConfig field (help text from the field's metadata)."""
    for f in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + f.name.replace("_", "-")
        meta = f.metadata
        if meta.get("flag"):
            func = click.option(name, is_flag=True, default=f.default, help=meta["help"])(func)
        elif isinstance(f.default, bool):
            func = click.option(f"{name}/--no-{f.name.replace('_', '-')}", default=f.default, show_default=True,
                                help=meta["help"])(func)
        elif "choices" in meta:
            func = click.option(name, type=click.Choice(meta["choices"]), default=f.default, show_default=True,
                                help=meta["help"])(func)
        else:
            kind = {int: int, float: float}.get(type(f.default), str)
            func = click.option(name, type=kind, default=f.default, show_default=f.default not in (None, ""),
                                help=meta["help"])(func)
    return func

