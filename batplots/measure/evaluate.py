"""`batplots eval`: how good, how original and how fast the model's writing is.

Three runs over the same prompts and seeds, so they are paired sample for sample:
  base           the bare base model (a reference for every number)
  adapter        the fine-tuned model with the copy guard off
  adapter+guard  the same with the copy guard on (what users get)
plus held-out perplexity of base and adapter on the split training held out.
Each continuation has a fixed seed (EVAL_SEED, prompt and sample number) and
starts from an empty prompt cache, so a run is reproducible up to timings. Words
are compared as the corpus index normalises them (batplots.corpus.index: case, quotes
and punctuation ignored).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from batplots.story import passage as passagelib
from batplots import text as textlib
from batplots.model.engine.base import DEFAULT_COPY_LIMIT, Engine, Settings
from batplots.corpus.index import NGRAM, CorpusIndex, words

EVAL_SEED = 1966
DEFAULT_SAMPLES = 5
MAX_SAMPLES = 100
DEFAULT_SENTENCES = 2
MAX_PROMPTS = 1000
OPENINGS_FILE = Path(__file__).parents[1] / "data" / "openings.txt"
# Perplexity windows and split when training.json does not say (batplots.corpus.split's and batplots.train.dataset's rules).
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SEQ_LEN = 256
PPL_BATCH = 4
RUNS = ("base", "adapter", "adapter+guard")
# The targets for adapter+guard.
TARGET_COPIED_SHARE = 0.01
TARGET_EXACT_RATE = 0.98
TARGET_GUARD_COST = 0.10

# Named characters of the show, each with the phrases (normalised words) that name
# it; longer phrases are tried first, so "barbara gordon" is not also Gordon.
CHARACTERS: dict[str, tuple[str, ...]] = {
    "Batman": ("batman",), "Robin": ("robin", "boy wonder"), "Batgirl": ("batgirl",),
    "Bruce Wayne": ("bruce wayne", "bruce"), "Dick Grayson": ("dick grayson", "dick"),
    "Barbara Gordon": ("barbara gordon", "barbara"), "Alfred": ("alfred",),
    "Aunt Harriet": ("aunt harriet", "harriet"), "Commissioner Gordon": ("commissioner gordon", "gordon"),
    "Chief O'Hara": ("chief o'hara", "o'hara"), "Joker": ("joker",), "Penguin": ("penguin",),
    "Riddler": ("riddler",), "Catwoman": ("catwoman",), "Mr. Freeze": ("mr freeze",),
    "Mad Hatter": ("mad hatter",), "King Tut": ("king tut",), "Egghead": ("egghead",),
    "Bookworm": ("bookworm",), "False Face": ("false face",), "Archer": ("archer",),
    "Ma Parker": ("ma parker",), "Minstrel": ("minstrel",), "Sandman": ("sandman",),
    "Black Widow": ("black widow",), "Louie the Lilac": ("louie the lilac", "louie"),
    "Olga": ("olga",), "Marsha": ("marsha",), "Lord Ffogg": ("lord ffogg", "ffogg"),
    "Puzzler": ("puzzler",), "Clock King": ("clock king",), "Chandell": ("chandell",),
    "Colonel Gumm": ("colonel gumm",), "Zelda": ("zelda",), "Minerva": ("minerva",),
    "Nora Clavicle": ("nora clavicle",), "Green Hornet": ("green hornet",), "Kato": ("kato",),
    "Mayor Linseed": ("mayor linseed",),
}
_ALIASES = sorted(((tuple(a.split()), name) for name, aliases in CHARACTERS.items() for a in aliases),
                  key=lambda item: -len(item[0]))


@dataclass
class Sample:
    """One continuation of one prompt in one run."""

    prompt: int  # index into the prompts
    sample: int
    seed: int
    text: str
    sentences: list[str]
    seconds: float
    tokens: int = 0
    check_seconds: float = 0.0  # time spent inside the copy guard's checks
    flags: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------ pure metrics

def load_prompts(path: str | Path | None = None) -> list[str]:
    """Prompts, one a line; blank lines and lines starting with # are skipped."""
    path = Path(path) if path else OPENINGS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read prompts from {path}: {exc}") from exc
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts; write one opening a line")
    if len(prompts) > MAX_PROMPTS:
        raise ValueError(f"{path} holds {len(prompts)} prompts; at most {MAX_PROMPTS} are allowed")
    return prompts


def sample_seed(prompt: int, sample: int) -> int:
    return EVAL_SEED + 1000 * prompt + sample


def characters_in(text: str) -> set[str]:
    """The show's named characters that text mentions (see CHARACTERS)."""
    ws = words(text)
    found, i = set(), 0
    while i < len(ws):
        for alias, name in _ALIASES:
            if tuple(ws[i:i + len(alias)]) == alias:
                found.add(name)
                i += len(alias)
                break
        else:
            i += 1
    return found


def distinct_2(texts: list[str]) -> float | None:
    """Distinct word bigrams over all bigrams, pooled over texts (bigrams stay inside one text)."""
    bigrams = [tuple(ws[i:i + 2]) for ws in map(words, texts) for i in range(len(ws) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else None


def exactly_n(text: str, n: int) -> bool:
    """True when text is exactly n complete sentences, by the splitter, not the engine."""
    return textlib.ends_sentence(text) and len(textlib.complete_sentences(text.strip())) == n


def continuation_metrics(samples: list[Sample], index: CorpusIndex, sentences: int,
                         copy_limit: int = DEFAULT_COPY_LIMIT) -> dict:
    """Every per-run number of the eval, from the samples alone."""
    if not samples:
        return {"continuations": 0}
    copied = total = 0
    longest = []
    for s in samples:
        found, n = index.copied_in(s.text, NGRAM)
        copied, total = copied + found, total + n
        longest.append(index.longest_in_text(s.text)[0].length)
    all_sentences = [x for s in samples for x in textlib.complete_sentences(s.text.strip())]
    seconds = [s.seconds for s in samples]
    return {
        "continuations": len(samples),
        "exact_n_rate": sum(exactly_n(s.text, sentences) for s in samples) / len(samples),
        "ngrams": total,
        "copied_ngrams": copied,
        "copied_ngram_share": copied / total if total else 0.0,
        "longest_copied_mean": statistics.fmean(longest),
        "longest_copied_max": max(longest),
        "continuations_copying_limit": sum(length >= copy_limit for length in longest),
        "distinct_2": distinct_2([s.text for s in samples]),
        "mean_sentence_words": statistics.fmean(len(words(x)) for x in all_sentences) if all_sentences else None,
        "characters_per_turn": statistics.fmean(len(characters_in(s.text)) for s in samples),
        "median_seconds": statistics.median(seconds),
        "total_seconds": sum(seconds),
        "check_share": sum(s.check_seconds for s in samples) / sum(seconds) if sum(seconds) else 0.0,
        "flagged_sentences": sum(len(s.flags) for s in samples),
    }


# ------------------------------------------------------------------ running

def timed(check) -> tuple[Callable | None, list[float]]:
    """Wrap a sentence check so the time spent in it is recorded."""
    spent: list[float] = []
    if check is None:
        return None, spent

    def wrapper(sentence):
        t = time.perf_counter()
        try:
            return check(sentence)
        finally:
            spent.append(time.perf_counter() - t)

    return wrapper, spent


def generate_samples(engine: Engine, prompts: list[str], samples: int, variants: dict[str, Settings],
                     progress: Callable[[str, int, int], None] | None = None,
                     guard=None) -> dict[str, list[Sample]]:
    """K seeded continuations of each prompt under each variant of the settings, one
    sample each (batplots.story.passage; the copy guard, when given, vets sentences where a
    variant's copy_limit is not 0).

    The variants of one (prompt, seed) run back to back, in an order that rotates
    from one pair to the next, so timings are paired under the same machine load.
    The engine's prompt cache is reset before each: a continuation is then the same
    whatever ran before it (a reused prefix was computed in other batch shapes,
    and its float rounding can flip a rare token), so a run is reproducible and the
    variants differ only where their settings do; the timings are those of a story
    read cold. One untimed warm-up continuation first takes the engine's one-off
    start-up costs."""
    out: dict[str, list[Sample]] = {name: [] for name in variants}
    names = list(variants)
    todo, done = len(prompts) * samples * len(names), 0
    passagelib.run(engine, prompts[0], replace(next(iter(variants.values())), sentences=1, seed=0, copy_limit=0))
    for p, prompt in enumerate(prompts):
        for k in range(samples):
            shift = (p * samples + k) % len(names)
            for name in names[shift:] + names[:shift]:
                seeded = replace(variants[name], seed=sample_seed(p, k))
                check, spent = timed(guard.sentence_check(seeded.copy_limit) if guard is not None else None)
                engine.reset_cache()  # the text depends on (prompt, seed, settings) only
                result = passagelib.run(engine, prompt, seeded, check=check)
                out[name].append(Sample(prompt=p, sample=k, seed=seeded.seed, text=result.text,
                                        sentences=result.sentences, seconds=result.seconds, tokens=result.tokens,
                                        check_seconds=sum(spent), flags=result.flags))
                done += 1
                if progress:
                    progress(name, done, todo)
    for name in names:
        out[name].sort(key=lambda s: (s.prompt, s.sample))
    return out


def perplexity(model, tokenizer, texts: list[str], seq_len: int = DEFAULT_SEQ_LEN) -> float:
    """exp(mean next-token loss) over texts, each tokenised on its own, joined by EOS
    and cut into non-overlapping windows of seq_len tokens (every token predicted once
    except each window's first)."""
    return heldout_scores(model, tokenizer, texts, seq_len)["ppl"]


def heldout_scores(model, tokenizer, texts: list[str], seq_len: int = DEFAULT_SEQ_LEN) -> dict:
    """Perplexity (as `perplexity`) and bits per character of the same predicted tokens:
    perplexity is per token, so only bits/char compares bases with different tokenizers."""
    import torch

    ids: list[int] = []
    for i, text in enumerate(texts):
        if i and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    windows = [ids[i:i + seq_len] for i in range(0, len(ids), seq_len)]
    windows = [w for w in windows if len(w) > 1]
    if not windows:
        raise ValueError("the held-out text is too short for a perplexity (fewer than 2 tokens)")
    nll, count = 0.0, 0
    # Characters of every predicted token (each window's first is context, not predicted).
    chars = sum(len(tokenizer.decode(w[1:])) for w in windows)
    with torch.no_grad():
        for i in range(0, len(windows), PPL_BATCH):
            group = windows[i:i + PPL_BATCH]
            width = max(map(len, group))
            batch = torch.zeros(len(group), width, dtype=torch.long)
            labels = torch.full((len(group), width), -100, dtype=torch.long)
            mask = torch.zeros(len(group), width, dtype=torch.long)
            for row, w in enumerate(group):
                batch[row, :len(w)] = torch.tensor(w)
                labels[row, :len(w)] = torch.tensor(w)
                mask[row, :len(w)] = 1
            logits = model(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            nll += float(loss)
            count += int((target != -100).sum())
    return {"ppl": math.exp(nll / count), "bits_per_char": nll / math.log(2) / max(chars, 1)}


def split_setting(info: dict | None, key: str, default):
    """A split setting as training.json records it: under "split", else "config"."""
    for section in ("split", "config"):
        value = ((info or {}).get(section) or {}).get(key)
        if value is not None:
            return value
    return default


def heldout_texts(corpus: Path, info: dict | None) -> tuple[list[str], dict]:
    """The validation side of the split training used (batplots.corpus.split), and how it was cut."""
    from batplots.corpus.split import split_corpus

    fraction = float(split_setting(info, "val_fraction", DEFAULT_VAL_FRACTION))
    split = split_corpus(corpus, fraction)
    return split.val, {"val_fraction": fraction, "kind": split.kind, "episodes": split.episodes,
                       "val_titles": split.val_titles, "val_chars": sum(map(len, split.val))}


# ------------------------------------------------------------------ report

def check_targets(runs: dict, guard_cost: float | None) -> dict:
    """The issue's targets for adapter+guard: value, limit and pass/fail for each."""
    guarded = runs.get("adapter+guard")
    if not guarded or not guarded.get("continuations"):
        return {}
    out = {
        "copied_ngram_share": {"value": guarded["copied_ngram_share"], "below": TARGET_COPIED_SHARE},
        "longest_copied_max": {"value": guarded["longest_copied_max"], "below": guarded["copy_limit"]},
        "exact_n_rate": {"value": guarded["exact_n_rate"], "at_least": TARGET_EXACT_RATE},
    }
    if guard_cost is not None:
        out["guard_cost"] = {"value": guard_cost, "below": TARGET_GUARD_COST}
    for target in out.values():
        target["pass"] = (target["value"] < target["below"]) if "below" in target else (
            target["value"] >= target["at_least"])
    return out


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x, digits=2):
    return "—" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def format_table(report: dict) -> str:
    """The report as a fixed-width table (the README's Honesty section shows one)."""
    runs, ppl, targets = report["runs"], report.get("perplexity") or {}, report.get("targets") or {}
    cols = list(RUNS)
    rows = [
        ("held-out perplexity", {"base": _num(ppl.get("base")), "adapter": _num(ppl.get("adapter"))}, ""),
        ("held-out bits/char", {k: _num((ppl.get("bits_per_char") or {}).get(k), 3) for k in ("base", "adapter")}, ""),
        (f"exactly {report['sentences']} complete sentences", {c: _pct(runs.get(c, {}).get("exact_n_rate")) for c in cols},
         f">= {TARGET_EXACT_RATE:.0%}"),
        (f"word {NGRAM}-grams found in the corpus", {c: _pct(runs.get(c, {}).get("copied_ngram_share")) for c in cols},
         f"< {TARGET_COPIED_SHARE:.0%}"),
        ("longest copied span, mean (words)", {c: _num(runs.get(c, {}).get("longest_copied_mean"), 1) for c in cols}, ""),
        ("longest copied span, max (words)", {c: _num(runs.get(c, {}).get("longest_copied_max")) for c in cols},
         f"< {report['copy_limit']}"),
        ("distinct-2", {c: _num(runs.get(c, {}).get("distinct_2"), 3) for c in cols}, ""),
        ("mean sentence length (words)", {c: _num(runs.get(c, {}).get("mean_sentence_words"), 1) for c in cols}, ""),
        ("named characters per turn", {c: _num(runs.get(c, {}).get("characters_per_turn")) for c in cols}, ""),
        ("median seconds per continuation", {c: _num(runs.get(c, {}).get("median_seconds")) for c in cols}, ""),
        ("sentences the guard let through", {"adapter+guard": _num(runs.get("adapter+guard", {}).get("flagged_sentences"))}, ""),
        ("guard cost (median time)", {"adapter+guard": "—" if report.get("guard_cost") is None
                                      else f"{100 * report['guard_cost']:+.1f}%"}, f"< {TARGET_GUARD_COST:.0%}"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"batplots eval: {report['model']}, {report['prompts']['count']} prompts x {report['samples']} samples, "
             f"{report['sentences']} sentences, seed {report['seed']}",
             " " * width + "".join(f"{c:>15}" for c in cols) + f"{'target':>10}"]
    for label, cells, target in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{cells.get(c, ''):>15}" for c in cols) + f"{target:>10}")
    if targets:
        failed = [name for name, t in targets.items() if not t["pass"]]
        lines.append("targets: " + ("all met" if not failed else "missed: " + ", ".join(failed)))
    story = report.get("story") or {}
    if story.get("runs"):
        from batplots.measure import storyeval

        lines += ["", f"story metrics: {report['prompts']['count']} openings and {story['stories']} scripted stories "
                      f"(8 turns each); adapter+writer = {story['takes']} ranked takes a passage",
                  storyeval.format_table(story["runs"])]
        writer = story["runs"].get("adapter+writer")
        if writer:
            missed = [name for name, ok in writer["targets"].items() if not ok]
            lines.append("story targets (adapter+writer): " + ("all met" if not missed else "missed: "
                                                                + ", ".join(missed)))
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    """Write the JSON report atomically."""
    from batplots.files import atomic_write_text

    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def default_out(adapter_label: str) -> Path:
    from batplots.files import home

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return home() / "eval" / f"eval-{adapter_label}-{stamp}.json"


class EvalError(RuntimeError):
    """The eval cannot run; the message says what is missing."""


@dataclass
class EvalOptions:
    engine: str = "auto"
    base: str | None = None
    adapter: str | None = None  # None: the shipped default adapter
    prompts: Path | None = None  # None: OPENINGS_FILE
    samples: int = DEFAULT_SAMPLES
    sentences: int = DEFAULT_SENTENCES
    copy_limit: int = DEFAULT_COPY_LIMIT
    corpus: Path | None = None  # None: the corpus the adapter's training.json names
    base_samples: bool = True  # also sample the bare base model
    stories: int | None = None  # scripted stories for the story metrics (None: all; 0: none)
    takes: int | None = None  # the Writer's takes in the story metrics (None: the base's, writer.takes_for)


def run_eval(opts: EvalOptions, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Run the whole eval (see the module doc) and return the report."""
    from batplots.corpus import guard as guardlib
    from batplots.model import bases
    from batplots.model import weights as modellib
    from batplots.model.engine import EngineSpec
    from batplots.story.writer import open_writer, takes_for

    if opts.engine == "openai":
        raise EvalError("the eval loads the base model and the adapter itself, so it needs a local engine: "
                        "use --engine llama or --engine transformers")
    if not 1 <= opts.samples <= MAX_SAMPLES:
        raise EvalError(f"--samples must be from 1 to {MAX_SAMPLES}, got {opts.samples}")
    prompts = load_prompts(opts.prompts)
    settings = Settings(sentences=opts.sentences, copy_limit=opts.copy_limit).validate()
    if not settings.copy_limit:
        raise EvalError("the eval compares the guard on and off: give a --copy-limit from 4 to 64")
    adapter_dir = modellib.resolve_adapter(opts.adapter, opts.base)
    if adapter_dir is None:
        raise EvalError("the eval compares the base model with an adapter: give --adapter DIR "
                        "(no shipped default adapter was found)")
    info = guardlib.read_training_info(adapter_dir) or {}
    guard = guardlib.guard_for_corpus(opts.corpus) if opts.corpus else guardlib.guard_for_adapter(adapter_dir)
    if not guard.active:
        raise EvalError(f"{guard.note}; the eval needs the training corpus: pass --corpus FILE")
    texts, split = heldout_texts(Path(guard.corpus), info)
    seq_len = int(split_setting(info, "seq_len", DEFAULT_SEQ_LEN))
    try:  # perplexity needs the transformers form of the base, whichever engine generates
        model, tokenizer, label = modellib.load_base(opts.base)
    except modellib.ModelError as exc:  # e.g. --base a .gguf file for --engine llama
        ppl = {"base": None, "adapter": None, "note": f"no perplexity: {exc}"}
        named = bases.find(opts.base)
        label = named.name if named is not None else Path(opts.base).name
    else:
        base_scores = heldout_scores(model, tokenizer, texts, seq_len)
        adapter_scores = heldout_scores(modellib.apply_adapter(model, adapter_dir), tokenizer, texts, seq_len)
        ppl = {"base": base_scores["ppl"], "adapter": adapter_scores["ppl"],
               "bits_per_char": {"base": round(base_scores["bits_per_char"], 4),
                                 "adapter": round(adapter_scores["bits_per_char"], 4)}}
        del model
    ppl.update(seq_len=seq_len, split=split)
    samples: dict[str, list[Sample]] = {}
    from batplots.measure import storyeval
    from batplots.story.lore import load_lore

    stories = storyeval.load_stories()[:opts.stories]
    takes = opts.takes or takes_for(EngineSpec(engine=opts.engine, base=opts.base))  # as serve runs the base
    story_runs, story_passages = {}, {}

    lore = load_lore(adapter_dir)

    def story_run(name, writer, story_settings):
        if opts.stories != 0:
            writer.engine.reset_cache()
            story_runs[name], passages = storyeval.run(name, writer, story_settings, prompts, stories, guard.index,
                                                       lore, progress)
            story_passages[name] = storyeval.as_dicts(passages)

    if opts.base_samples:
        bare = open_writer(EngineSpec(engine=opts.engine, base=opts.base, adapter="none"), takes)
        samples.update(generate_samples(bare.engine, prompts, opts.samples, {"base": replace(settings, copy_limit=0)},
                                        progress))
        story_run("base", bare, replace(settings, copy_limit=0))
        del bare
    # The Writer `serve` runs: the same open_writer, so the same takes, lore and
    # conditioning; the copy guard is the eval's (the same corpus, or --corpus).
    writer = open_writer(EngineSpec(engine=opts.engine, base=opts.base, adapter=str(adapter_dir)), takes)
    writer.guard = guard
    engine = writer.engine
    samples.update(generate_samples(engine, prompts, opts.samples, {
        "adapter": replace(settings, copy_limit=0), "adapter+guard": settings}, progress, guard))
    story_run("adapter", writer, settings)  # one sample a passage: the adapter with the copy guard
    for name in storyeval.WRITER_RUNS:  # the Writer; + the case file; + a drawn beat each story turn
        story_run(name, writer, settings)
    runs = {name: {**continuation_metrics(s, guard.index, settings.sentences, settings.copy_limit),
                   "copy_limit": 0 if name != "adapter+guard" else settings.copy_limit}
            for name, s in samples.items()}
    off, on = runs["adapter"]["median_seconds"], runs["adapter+guard"]["median_seconds"]
    guard_cost = on / off - 1 if off else None
    return {
        "version": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": f"{label} + {adapter_dir.name}",
        "engine": engine.describe(),
        "adapter": str(adapter_dir),
        "corpus": guard.describe(),
        "prompts": {"file": str(opts.prompts or OPENINGS_FILE), "count": len(prompts)},
        "samples": opts.samples,
        "sentences": settings.sentences,
        "seed": EVAL_SEED,
        "copy_limit": settings.copy_limit,
        "settings": {k: v for k, v in settings.to_dict().items() if k != "seed"},
        "perplexity": ppl,
        "runs": runs,
        "guard_cost": guard_cost,
        "targets": check_targets(runs, guard_cost),
        "continuations": {name: [asdict(x) for x in s] for name, s in samples.items()},
        "story": {"stories": len(stories), "takes": takes, "runs": story_runs, "passages": story_passages},
    }
