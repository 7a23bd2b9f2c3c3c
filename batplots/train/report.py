"""What a training run leaves beside its adapter: training.json, loss.png, MODEL_CARD.md.

Quality is the validation perplexity (held-out text the model never trained on),
compared with the bare base model on the same split; training loss is only
drawn in the plot, labelled as such.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

from batplots.model import bases

from batplots.files import atomic_write_text, default_file_mode

TARGET_PPL_RATIO = 0.6  # the quality target: adapter perplexity / base perplexity
DATA_SOURCE = "Batman Wiki, batman.fandom.com, plot sections of the 1960s series episode pages"
LICENSE = "CC BY-SA 3.0"


def _versions() -> dict:
    import peft
    import torch
    import transformers

    from batplots import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "batplots": __version__}


def _device_info(device) -> dict:
    import torch

    info = {"type": device.type, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        info |= {"name": torch.cuda.get_device_name(device), "dtype": "bfloat16 autocast, fp32 weights"}
    else:
        info |= {"dtype": "float32", "cpus": os.cpu_count()}
    if hasattr(os, "getloadavg"):  # other work on the machine slows a CPU run: say how much there was
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def summary(cfg, status, split, packed, state, base_label, device, wall, steps_per_epoch, planned) -> dict:
    """The whole record of a run (training.json)."""
    best = state.best or {}
    base = state.base_eval
    return {
        "status": status,
        "base_model": base_label,
        "method": cfg.method,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "corpus": {"path": str(cfg.corpus), "sha256": split.sha256, "kind": split.kind, "episodes": split.episodes,
                   "revids": [{"title": t, "revid": r} for t, r in split.revids]},
        "split": {"rule": ("whole episodes, evenly spread" if split.kind == "jsonl"
                           else "contiguous tail, cut at a sentence boundary"),
                  "val_fraction": cfg.val_fraction, "train_tokens": len(packed.train), "val_tokens": len(packed.val),
                  "train_windows": packed.train_windows, "seq_len": packed.seq_len,
                  "val_episodes": len(split.val) if split.kind == "jsonl" else None,
                  "val_titles": split.val_titles},
        "steps": state.step, "steps_per_epoch": steps_per_epoch, "planned_steps": planned,
        "epochs_done": round(state.step / steps_per_epoch, 3),
        "base_eval": base,
        "evaluations": state.evals,
        "best": best,
        "best_step": best.get("step"),
        "val_ppl": best.get("ppl"),
        "ppl_ratio_vs_base": round(best["ppl"] / base["ppl"], 4) if base and best else None,
        "wall_seconds": round(wall, 1),
        "seconds_to_best": best.get("elapsed_s"),
        "train_tokens_seen": state.tokens,
        "train_tokens_per_second": round(state.tokens / state.train_seconds, 1) if state.train_seconds else None,
        "train_log": state.train_log,
        "device": _device_info(device),
        "versions": _versions(),
    }


def plot_loss(summary: dict, path: Path) -> None:
    """Training loss per step and validation loss per evaluation, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    log = summary["train_log"]
    if log:
        ax.plot([r[0] for r in log], [r[2] for r in log], color="#9aa5b1", lw=1, label="training loss (per step)")
    evals = summary["evaluations"]
    if evals:
        ax.plot([e["step"] for e in evals], [e["loss"] for e in evals], "o-", color="#1f4e9c", lw=2,
                label="validation loss (held out)")
    if summary.get("base_eval"):
        ax.axhline(summary["base_eval"]["loss"], color="#b33", ls="--", lw=1, label="bare base model, validation")
    if summary.get("best_step") is not None:
        ax.axvline(summary["best_step"], color="#2a7", ls=":", lw=1, label=f"best (step {summary['best_step']})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"{summary['base_model']} + {summary['method']}: val ppl {summary.get('val_ppl')}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix="loss.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private (0600)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def model_card(summary: dict) -> str:
    """MODEL_CARD.md: base, data and its licence, the recipe, the metrics, intended use."""
    cfg = summary["config"]
    base, best, split = summary.get("base_eval") or {}, summary.get("best") or {}, summary["split"]
    mem = summary.get("memorisation")
    lines = [
        f"# batplots adapter: {Path(cfg['out']).name}",
        "",
        f"A {'LoRA adapter' if cfg['method'] == 'lora' else 'fine-tuned model'} for **{summary['base_model']}** "
        "that writes in the manner of the plot summaries of the 1966-1968 *Batman* TV series.",
        "",
    ]
    named = bases.BASES.get(summary["base_model"])
    if named is not None:  # where the base comes from and its licence, which the adapter's use inherits
        lines += [f"Base model: {named.origin}; licence {named.license}. Install: `{named.install}`.", ""]
    lines += [
        "## Data and licence",
        "",
        f"Trained on text from the **{DATA_SOURCE}**, licensed {LICENSE} "
        "(https://creativecommons.org/licenses/by-sa/3.0/). This adapter is a derivative of that text and is "
        f"shared under the same licence; attribution: {DATA_SOURCE}.",
        "",
        f"- corpus: `{Path(summary['corpus']['path']).name}`, sha256 `{summary['corpus']['sha256']}`, "
        f"{summary['corpus']['episodes']} episode(s) ({'scraped JSONL' if summary['corpus']['kind'] == 'jsonl' else 'plain text'})",
        f"- held-out split: {split['rule']}, {split['val_fraction']:.0%}: {split['train_tokens']:,} training "
        f"tokens, {split['val_tokens']:,} validation tokens",
    ]
    revids = summary["corpus"].get("revids") or []
    if revids:
        lines += ["", "Page revisions used (title: revid):", ""]
        lines += [f"- {r['title']}: {r['revid']}" for r in revids]
    lines += [
        "",
        "## Metrics (validation split, never trained on)",
        "",
        "| model | validation loss | validation perplexity |",
        "| --- | --- | --- |",
    ]
    if base:
        lines.append(f"| bare base model | {base['loss']:.4f} | {base['ppl']:.2f} |")
    lines.append(f"| this adapter (best, step {summary.get('best_step')}) | {best.get('loss', float('nan')):.4f} | "
                 f"{best.get('ppl', float('nan')):.2f} |")
    if summary.get("ppl_ratio_vs_base") is not None:
        ratio = summary["ppl_ratio_vs_base"]
        lines += ["", f"Perplexity ratio adapter / base: **{ratio:.3f}** (the project's target is at most "
                      f"{TARGET_PPL_RATIO}: {'met' if ratio <= TARGET_PPL_RATIO else 'not met'})."]
    lines += _conditioning_lines(summary)
    dev = summary["device"]
    lines += [
        "",
        f"Training: {summary['steps']} steps ({summary['epochs_done']} epochs, status {summary['status']}), best at "
        f"step {summary.get('best_step')} after {summary.get('seconds_to_best')} s; whole run {summary['wall_seconds']} s "
        f"on {dev['type']} ({dev.get('name') or dev.get('cpu')}, {dev['threads']} threads, {dev['dtype']}), "
        f"{summary.get('train_tokens_per_second')} training tokens/s"
        + (f"; load average {dev['load_average_at_end']} at the end, "
           f"{(summary.get('setup_seconds') or {}).get('load_average_at_start')} at the start"
           if dev.get("load_average_at_end") else "") + ".",
    ]
    if mem:
        lines += [
            "",
            "## Memorisation",
            "",
            f"{mem['samples']} sampled continuations ({mem['generated_words']} words) of story openings that are not "
            f"in the corpus: **{mem['copied_share']:.1%}** of their word {mem['ngram']}-grams occur verbatim in the "
            f"corpus (limit {mem['limits']['copied_share_below']:.0%}); the longest copied span is "
            f"**{mem['longest_span_words']} words** (limit {mem['limits']['longest_span_below']}): "
            f"\"{mem['longest_span_text']}\". Measured before any generation-time guard.",
        ]
    gpu = summary.get("gpu_run")
    if gpu:
        lines += ["", "## GPU run", "", gpu]
    lines += [
        "",
        "## Recipe",
        "",
        "```",
        "batplots train " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in cfg.items()
                                     if k in ("corpus", "out", "method", "layers", "lora_r", "lora_alpha",
                                              "lora_dropout", "lr", "epochs", "seq_len", "batch_size", "seed"))
        + (f" --header --header-share {cfg['header_share']} --marker-share {cfg['marker_share']}"
           + (" --header-extra" if cfg.get("header_extra") else "")
           if cfg.get("header") else (" --no-header" if "header" in cfg else "")),
        "```",
        "",
        "Every setting, each evaluation and the software versions are in `training.json`; `loss.png` plots "
        "training loss (per step) and validation loss (per evaluation).",
        "",
        "## Intended use",
        "",
        "Co-writing new, original episode plots for fun with `batplots` (web app, `batplots write`, "
        "`batplots generate`). Not for reproducing the wiki's text: the weights kept are those with the best "
        "loss on held-out text (with early stopping), and the output was checked for verbatim copying (above). A 135M-parameter model invents freely: its 'facts' about the "
        "show are not reliable. Load it with `peft.PeftModel.from_pretrained(base, this_directory)`.",
        "",
    ]
    return "\n".join(lines)


def _conditioning_lines(summary: dict) -> list[str]:
    """The model card's Conditioning section (batplots.story.conditioning), when the run had headers."""
    cond, cfg = summary.get("conditioning"), summary["config"]
    if not cond:
        return []
    train = cond["train"]
    return [
        "",
        "## Conditioning",
        "",
        f"Trained with control codes (`--header`): {cfg['header_share']:.0%} of the training windows "
        + ("come again, on top of every plain window (`--header-extra`), starting with " if cfg.get("header_extra")
           else "start with ")
        + "their episode's header, e.g. `[Villain: Riddler | Cast: Batman, Robin, Commissioner Gordon]`, "
        f"and {cfg['marker_share']:.0%} of those windows' beat-playing sentences have a marker such as "
        "` [Next: batcave]` before them; the codes are masked out of the loss (batplots/story/conditioning.py builds "
        "them, for training and generation alike). "
        + ("Every window is also seen plain. " if cfg.get("header_extra") else "The rest of the windows are plain text. ")
        + f"{train['episodes_with_header']} of {train['episodes']} training episodes have a header "
        f"(at most {train['header_tokens_max']} tokens).",
        "",
        "| validation text | validation loss | validation perplexity |",
        "| --- | --- | --- |",
        f"| plain (the figure above) | {(summary.get('best') or {}).get('loss', float('nan')):.4f} | "
        f"{(summary.get('best') or {}).get('ppl', float('nan')):.2f} |",
        f"| with each episode's header | {cond['val_with_header']['loss']:.4f} | "
        f"{cond['val_with_header']['ppl']:.2f} |",
        f"| with header and a marker before every beat | {cond['val_with_header_and_beats']['loss']:.4f} | "
        f"{cond['val_with_header_and_beats']['ppl']:.2f} |",
    ]


def write_outputs(out: Path, summary: dict) -> None:
    atomic_write_text(out / "training.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    plot_loss(summary, out / "loss.png")
    atomic_write_text(out / "MODEL_CARD.md", model_card(summary))


# The settings that make a recipe; a GPU run that differs in any is described as another recipe.
RECIPE_KEYS = ("method", "layers", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "lr", "epochs",
               "seq_len", "batch_size", "warmup_steps", "weight_decay", "seed", "header", "header_share",
               "header_extra", "marker_share")


def gpu_run_text(gpu: dict, config: dict | None = None) -> str:
    """One paragraph on a GPU run (its training.json), saying whether it ran the same
    recipe as the adapter whose training config is given."""
    dev = gpu["device"]
    setup = gpu.get("setup_seconds") or {}
    theirs = gpu.get("config") or {}
    diff = [k for k in RECIPE_KEYS if config is not None and theirs.get(k) != config.get(k)]
    if config is None:
        what = "A GPU run"
    elif diff:
        what = "A GPU run of another recipe (" + ", ".join(f"{k} {theirs.get(k)}" for k in diff) + ")"
    else:
        what = "The same recipe"
    return (f"{what} on {dev.get('name', dev['type'])} ({dev['dtype']}): best validation perplexity "
            f"{gpu['val_ppl']} (bare base {gpu['base_eval']['ppl']}, ratio {gpu['ppl_ratio_vs_base']}) at step "
            f"{gpu['best_step']} after {gpu['seconds_to_best']} s; whole run {gpu['wall_seconds']} s (loading "
            f"{setup.get('load_s')} s, frozen-layer cache {setup.get('cache_s')} s), "
            f"{gpu['train_tokens_per_second']} training tokens/s; torch {gpu['versions']['torch']}, "
            f"transformers {gpu['versions']['transformers']}, peft {gpu['versions']['peft']}. "
            "The committed weights are the CPU run's.")


def add_gpu_run(adapter_dir: Path, gpu_training_json: Path) -> str:
    """Record a GPU run (scripts/gpu_train.sh) in an adapter's training.json and model card."""
    summary = json.loads((adapter_dir / "training.json").read_text(encoding="utf-8"))
    gpu = json.loads(gpu_training_json.read_text(encoding="utf-8"))
    if gpu["corpus"]["sha256"] != summary["corpus"]["sha256"]:
        raise SystemExit(f"{gpu_training_json} trained on another corpus (sha256 {gpu['corpus']['sha256'][:12]}...)")
    summary["gpu_run"] = gpu_run_text(gpu, summary.get("config"))
    summary["gpu_run_summary"] = {k: gpu.get(k) for k in ("val_ppl", "best_step", "seconds_to_best", "wall_seconds",
                                                      "train_tokens_per_second", "device", "versions",
                                                      "base_eval", "ppl_ratio_vs_base", "setup_seconds")}
    atomic_write_text(adapter_dir / "training.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(adapter_dir / "MODEL_CARD.md", model_card(summary))
    return summary["gpu_run"]


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "add-gpu-run":
        raise SystemExit("usage: python -m batplots.train.report add-gpu-run ADAPTER_DIR GPU_TRAINING_JSON")
    print(add_gpu_run(Path(sys.argv[2]), Path(sys.argv[3])))
