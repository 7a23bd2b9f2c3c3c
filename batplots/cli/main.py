"""The `batplots` command line. Each command's docstring is its help text."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time

import click

from batplots.model.engine import EngineError, EngineSpec, Settings, SettingsError
from batplots.model.engine import base as eb
from batplots.cli.accounts import db_shown, db_target, security_options, serve_security, users
from batplots.cli.db import db as db_group
from batplots.cli.corpus import corpus_group, scrape
from batplots.cli.lore import lore as lore_command
from batplots.model.weights import ModelError
from batplots.store.stories import StoreError


def engine_options(func):
    """--engine/--base/--adapter: which model to load (shared by every model command)."""
    from batplots.model.engine import ENGINES

    # --base-url/--model reach engine_spec through the click context, so
    # that commands need no extra parameters for them.
    func = click.option("--model", "remote_model", default=None, metavar="NAME", expose_value=False,
                        callback=_remember_remote,
                        help="--engine openai: the model name the server serves (see its /v1/models).")(func)
    func = click.option("--base-url", default=None, metavar="URL", expose_value=False, callback=_remember_remote,
                        help="--engine openai: the server's OpenAI API address, e.g. http://gpu1:8000/v1.")(func)
    func = click.option("--adapter", default=None, metavar="DIR|NAME|none",
                        help="PEFT adapter directory; default: the base's shipped adapter; 'none': bare base.")(func)
    func = click.option("--base", default=None, metavar="NAME_OR_DIR",
                        help="Base model: best (qwen2.5-coder-1.5b-instruct, the default where installed), "
                             "fast (smollm2-135m-instruct, 4x faster), a .gguf file, or a Hugging Face model "
                             "directory.")(func)
    func = click.option("--engine", "engine_name", type=click.Choice(ENGINES), default="auto", show_default=True,
                        help="Generation backend: auto = llama (llama.cpp, fast) where installed, else transformers; "
                             "openai = a remote OpenAI-compatible server (--base-url, --model).")(func)
    return func


def _remember_remote(ctx, param, value):
    ctx.meta[f"batplots.{param.name}"] = value
    return value


@contextlib.contextmanager
def engine_failures():
    """A model server that is down or too slow ends the command with its message."""
    try:
        yield
    except EngineError as exc:
        raise click.ClickException(f"the model failed: {exc}") from exc


def engine_spec(engine_name: str, base: str | None, adapter: str | None) -> EngineSpec:
    """The EngineSpec of the engine options given on the command line."""
    meta = click.get_current_context().meta
    return EngineSpec(engine=engine_name, base=base, adapter=adapter, base_url=meta.get("batplots.base_url"),
                      model=meta.get("batplots.remote_model"))


def sampling_options(func):
    """Sampling controls with their allowed ranges in the help."""
    func = click.option("--max-context", type=int, default=Settings.max_context, show_default=True,
                        help=f"Tokens of story the model sees ({eb.MIN_CONTEXT}-{eb.MAX_CONTEXT}).")(func)
    func = click.option("--repetition-penalty", type=float, default=Settings.repetition_penalty, show_default=True,
                        help=f"Penalty on repeated tokens ({eb.MIN_REPETITION_PENALTY}-{eb.MAX_REPETITION_PENALTY}).")(func)
    func = click.option("--top-k", type=int, default=Settings.top_k, show_default=True,
                        help=f"Sample from the k likeliest tokens ({eb.MIN_TOP_K}-{eb.MAX_TOP_K}; 0 = off).")(func)
    func = click.option("--top-p", type=float, default=Settings.top_p, show_default=True,
                        help=f"Nucleus sampling mass ({eb.MIN_TOP_P}-{eb.MAX_TOP_P}).")(func)
    func = click.option("--temperature", type=float, default=Settings.temperature, show_default=True,
                        help=f"Randomness ({eb.MIN_TEMPERATURE}-{eb.MAX_TEMPERATURE}; 0 = greedy).")(func)
    func = click.option("--seed", type=int, default=None, help="Same seed and settings give the same text.")(func)
    func = click.option("-n", "--sentences", type=int, default=Settings.sentences, show_default=True,
                        help=f"Complete sentences to add ({eb.MIN_SENTENCES}-{eb.MAX_SENTENCES}).")(func)
    return func


def guard_options(func):
    """--copy-limit/--no-copy-guard: the copy guard (batplots.corpus.guard), on by default."""
    func = click.option("--no-copy-guard", is_flag=True,
                        help="Let sentences copy the training corpus (same as --copy-limit 0).")(func)
    func = click.option("--copy-limit", type=int, default=eb.DEFAULT_COPY_LIMIT, show_default=True, metavar="N",
                        help=f"Resample a sentence sharing N consecutive words with the training corpus "
                             f"({eb.MIN_COPY_LIMIT}-{eb.MAX_COPY_LIMIT}; 0 = off).")(func)
    return func


def copy_limit_of(copy_limit: int, no_copy_guard: bool) -> int:
    return 0 if no_copy_guard else copy_limit


def guard_notice(guard, settings: Settings) -> None:
    """Tell the user (on stderr) when the copy guard is off or checks a different corpus."""
    if settings.copy_limit and guard is not None and guard.note:
        click.echo(f"({guard.note})", err=True)


def flag_notice(result) -> None:
    """Name each sentence the guard had to let through, on stderr."""
    from batplots.corpus.guard import flag_text

    for flag in result.flags:
        click.echo(flag_text(flag), err=True)


def make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context,
                  copy_limit: int = eb.DEFAULT_COPY_LIMIT) -> Settings:
    """Validated Settings from CLI values; a bad value becomes a usage error naming its range."""
    try:
        return Settings(sentences=sentences, seed=seed, temperature=temperature, top_p=top_p, top_k=top_k,
                        repetition_penalty=repetition_penalty, max_context=max_context,
                        copy_limit=copy_limit).validate()
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc


def takes_option(func):
    """--takes: the Writer's ranked takes per passage."""
    from batplots.story import take as takelib

    return click.option("--takes", type=click.IntRange(takelib.MIN_TAKES, takelib.MAX_TAKES),
                        default=None,
                        help="Takes decoded together per passage; the best one by the story's names, length "
                             "and likelihood is kept (1 = a single sample). Default: the base's, 4 for fast, "
                             "3 for best.")(func)


def load_writer(engine_name: str, base: str | None, adapter: str | None, takes: int | None):
    """The Writer the engine options name (batplots.story.writer.open_writer), or exit with the
    model error's message (what to install / which path)."""
    from batplots.story.writer import open_writer

    try:
        return open_writer(engine_spec(engine_name, base, adapter), takes)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(package_name="batplots")
def main():
    """Co-write new episodes of the 1966 Batman TV series with a small language model."""


@main.command()
@click.argument("prompt")
@sampling_options
@guard_options
@engine_options
@takes_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the story.")
def generate(prompt, sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context,
             copy_limit, no_copy_guard, engine_name, base, adapter, takes, as_json):
    """Continue PROMPT with N complete sentences."""
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty; write a sentence or two to continue", param_hint="PROMPT")
    settings = make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context,
                             copy_limit_of(copy_limit, no_copy_guard))
    writer = load_writer(engine_name, base, adapter, takes)
    engine = writer.engine
    guard_notice(writer.guard, settings)
    started = time.perf_counter()
    if as_json:
        with engine_failures():
            result = writer.run(prompt, settings)
        click.echo(json.dumps({
            "prompt": prompt,
            "continuation": result.text.strip(),
            "sentences": result.sentences,
            "settings": result.settings.to_dict(),
            "seconds": round(time.perf_counter() - started, 3),
            "tokens": result.tokens,
            "trimmed": result.trimmed,
            "model": engine.describe(),
            "copy_guard": writer.guard.describe() if writer.guard else None,
            "flags": result.flags,
            "provenance": result.provenance,
            "why": result.why,
            "candidates": [{k: v for k, v in c.items() if k != "sentences"} for c in result.candidates],
        }, ensure_ascii=False))
        return
    click.echo(prompt, nl=False)
    with engine_failures():
        _, result = stream_to_terminal(writer.stream(prompt, settings))
    click.echo()
    if result.trimmed:
        click.echo("(the token cap cut the last sentence, so it was left out)", err=True)
    flag_notice(result)


def stream_to_terminal(take):
    """Print a take's pieces as they come (on a terminal), redrawing the draft on a
    Rewind; elsewhere (a pipe) print only the final text, so pipes get clean output."""
    draft = ""
    for event in take:
        if isinstance(event, eb.Rewind):
            if sys.stdout.isatty():
                click.echo("\b" * len(draft) + " " * len(draft) + "\b" * len(draft), nl=False)
            draft = event.text
            if sys.stdout.isatty():
                click.echo(draft, nl=False)
        else:
            draft += event
            if sys.stdout.isatty():
                click.echo(event, nl=False)
    if not sys.stdout.isatty():
        click.echo(take.result.text, nl=False)
    return draft, take.result


@main.command()
@sampling_options
@guard_options
@engine_options
@takes_option
def write(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context, copy_limit, no_copy_guard,
          engine_name, base, adapter, takes):
    """Co-write in the terminal: you write a sentence or two, the model adds N (/help for commands)."""
    from batplots.cli.write import WriteSession

    settings = make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context,
                             copy_limit_of(copy_limit, no_copy_guard))
    click.echo("Loading the model...", err=True)
    writer = load_writer(engine_name, base, adapter, takes)
    guard_notice(writer.guard, settings)
    WriteSession(writer, settings).loop(sys.stdin)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (another than loopback, e.g. 0.0.0.0, needs accounts: batplots users add).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--db", "db_path", default=None, metavar="PATH|URL",
              help="SQLite file for the stories, or a PostgreSQL URL postgresql://USER@HOST:PORT/DBNAME (several "
                   "app instances share one); default: stories.sqlite3 under $BATPLOTS_HOME (~/.cache/batplots).")
@click.option("--public-url", default=None, metavar="URL",
              help="The address readers reach this server by (e.g. behind a proxy), for share links; default: the "
                   "address the page was opened by.")
@click.option("--one-base", is_flag=True,
              help="Offer only --base: no fast/best choice on the page, even when the other base is installed.")
@security_options
@sampling_options
@guard_options
@engine_options
@takes_option
def serve(host, port, db_path, public_url, one_base, allowed_hosts, api_key, no_auth, sentences, seed, temperature,
          top_p, top_k, repetition_penalty, max_context, copy_limit, no_copy_guard, engine_name, base, adapter, takes):
    """Serve the co-writing web app (stories saved in SQLite or PostgreSQL) and print its address."""
    from dataclasses import replace

    from batplots.model import bases
    from batplots.web import app as webapp
    from batplots.web.bases import second_base

    if public_url is not None:
        try:
            public_url = webapp.check_public_url(public_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--public-url") from exc
    settings = make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context,
                             copy_limit_of(copy_limit, no_copy_guard))
    db = db_target(db_path)
    security = serve_security(host, allowed_hosts, api_key, no_auth, db)

    spec = engine_spec(engine_name, base, adapter)  # here: load() runs in another thread
    own = bases.find(base) if engine_name != "openai" else None
    other = second_base(engine_name, base, one_base)

    def loader(spec, role=None):
        what = f"{role} model" if role else "model"

        def load():
            from batplots.story.writer import open_writer

            try:
                writer = open_writer(spec, takes)
            except Exception as exc:
                click.echo(f"batplots: the {what} failed to load: {exc}", err=True)
                raise
            guard_notice(writer.guard, settings)
            click.echo(f"batplots: {what} ready: {json.dumps(writer.engine.describe(), ensure_ascii=False)}", err=True)
            return writer
        return load

    # The other named base runs its own shipped adapter (--adapter is for --base's).
    load_other = loader(replace(spec, base=other.name, adapter=None), other.role) if other else None
    try:
        app = webapp.create_app(webapp.WebConfig(db_path=db, settings=settings, load_writer=loader(spec),
                                                 security=security, public_url=public_url, base=own,
                                                 other_base=other, load_other=load_other))
    except (OSError, sqlite3.Error, StoreError) as exc:
        raise click.ClickException(f"cannot open the story database {db_shown(db)}: {exc}") from exc
    offer = f"; {other.role} ({other.name}) loads when a story first picks it" if other else ""
    try:
        webapp.serve(app, host, port, lambda url: click.echo(
            f"batplots: serving on {url} (stories in {db_shown(db)}; the model loads in the background{offer}; "
            "Ctrl+C stops)"))
    except KeyboardInterrupt:  # uvicorn has shut down cleanly, then passes Ctrl+C on: not click's "Aborted!"
        pass
    click.echo(f"batplots: server stopped; every story is saved in {db_shown(db)}.")


# ---------------------------------------------------------------- honesty: batplots eval

@main.command("eval")
@engine_options
@click.option("--prompts", type=click.Path(dir_okay=False), default=None,
              help="Openings to continue, one a line (default: the 20 shipped openings).")
@click.option("--samples", type=int, default=5, show_default=True, help="Seeded continuations per prompt (1-100).")
@click.option("-n", "--sentences", type=int, default=2, show_default=True,
              help=f"Complete sentences per continuation ({eb.MIN_SENTENCES}-{eb.MAX_SENTENCES}).")
@click.option("--copy-limit", type=int, default=eb.DEFAULT_COPY_LIMIT, show_default=True, metavar="N",
              help=f"The guard's limit in the guarded run ({eb.MIN_COPY_LIMIT}-{eb.MAX_COPY_LIMIT}).")
@click.option("--corpus", type=click.Path(dir_okay=False), default=None,
              help="The training corpus (default: the one the adapter's training.json names).")
@click.option("--no-base-samples", is_flag=True, help="Skip the bare base model's continuations (keeps its perplexity).")
@click.option("--stories", type=click.IntRange(0, 100), default=None,
              help="Scripted stories for the story metrics (default: all 12; 0: none).")
@click.option("--takes", type=click.IntRange(1, 8), default=None, help="The Writer's takes in the story metrics.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the JSON report (default: $BATPLOTS_HOME/eval/eval-ADAPTER-TIME.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
def eval_command(engine_name, base, adapter, prompts, samples, sentences, copy_limit, corpus, no_base_samples,
                 stories, takes, out, as_json):
    """Measure perplexity, copying from the corpus, sentence counts, variety and speed."""
    from pathlib import Path

    from batplots.measure import evaluate as ev
    from batplots.corpus.episodes import CorpusError

    opts = ev.EvalOptions(engine=engine_name, base=base, adapter=adapter, prompts=Path(prompts) if prompts else None,
                          samples=samples, sentences=sentences, copy_limit=copy_limit,
                          corpus=Path(corpus) if corpus else None, base_samples=not no_base_samples,
                          stories=stories, takes=takes)
    step = max(1, samples * 3)

    def progress(run, done, total):
        if done % step == 0 or done == total:
            click.echo(f"eval: {done}/{total} continuations ({run})", err=True)

    try:
        report = ev.run_eval(opts, progress)
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc
    except (ev.EvalError, ModelError, CorpusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    path = Path(out) if out else ev.default_out(Path(report["adapter"]).name)
    ev.write_report(report, path)
    click.echo(json.dumps(report, ensure_ascii=False, indent=2) if as_json else ev.format_table(report))
    click.echo(f"eval: report written to {path}", err=True)


# ---------------------------------------------------------------- fine-tuning: batplots train

from batplots.train.config import TrainConfig, click_options as train_options  # noqa: E402  (light: no torch)


@main.command()
@train_options
def train(**options):
    """Fine-tune the base model on a corpus: LoRA adapter, training.json, loss.png, MODEL_CARD.md."""
    from batplots.train import finetune as trainer

    trainer.run_from_cli(TrainConfig(**options))


# ---------------------------------------------------------------- speed: batplots bench


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--engines", default="llama,transformers", show_default=True,
              help="Engines to compare side by side, comma-separated (llama, transformers).")
@click.option("--prompts", type=click.IntRange(1, 20), default=20, show_default=True,
              help="How many of the 20 shipped openings to use.")
@click.option("--writers", default="1,4,16", show_default=True,
              help="Concurrent writers against the app, comma-separated; 'none' skips the app.")
@click.option("--base", default=None, metavar="NAME_OR_DIR", help="Base model: best, fast, a .gguf or a directory (default: best where installed).")
@click.option("--adapter", default=None, metavar="DIR|NAME|none", help="Adapter (default: the base's shipped one).")
@click.option("--formats", is_flag=True, help="Also compare the adapter's GGUF forms (merged Q8_0/Q4_1/F16, LoRA).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON report to this file.")
def bench(as_json, engines, prompts, writers, base, adapter, formats, out):
    """Time the engines side by side and the app under 1, 4 and 16 writers."""
    import tempfile
    from pathlib import Path

    from batplots.measure import bench as benchlib

    names = tuple(e.strip() for e in engines.split(",") if e.strip())
    unknown = [e for e in names if e not in ("llama", "transformers")]
    if unknown or not names:
        raise click.BadParameter(f"unknown engine {unknown[0] if unknown else engines!r}; "
                                 "choose from llama, transformers", param_hint="--engines")
    try:
        counts = () if writers.strip().lower() == "none" else tuple(int(w) for w in writers.split(","))
    except ValueError:
        counts = (0,)
    if any(not 1 <= n <= 64 for n in counts):
        raise click.BadParameter("give whole numbers from 1 to 64, comma-separated, or 'none'", param_hint="--writers")
    config = benchlib.BenchConfig(engines=names, base=base, adapter=adapter, prompts=prompts, writers=counts,
                                  formats=formats)
    with tempfile.TemporaryDirectory(prefix="batplots-bench-") as work:
        try:
            report = benchlib.run_bench(config, Path(work), progress=lambda m: click.echo(f"bench: {m}", err=True))
        except ModelError as exc:
            raise click.ClickException(str(exc)) from exc
    if out:
        tmp = Path(out).with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, out)
    click.echo(json.dumps(report) if as_json else benchlib.format_report(report))


@main.command("gguf")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The GGUF file to write.")
@click.option("--adapter", default=None, metavar="DIR|NAME|none", help="Adapter (default: the shipped one).")
@click.option("--base", default=None, metavar="NAME|FILE.gguf", help="Base: best, fast or a .gguf file (default: best where installed).")
@click.option("--format", "fmt", type=click.Choice(["q8_0", "lora"]), default="q8_0", show_default=True,
              help="q8_0: the base with the adapter merged in; lora: a GGUF LoRA for `llama-server --lora`.")
def gguf(out, adapter, base, fmt):
    """Write the model as GGUF, for a llama.cpp server on another machine (README "Scaling out")."""
    import shutil
    from pathlib import Path

    from batplots.model import weights as modellib
    from batplots.model.engine import gguf_lora, llama_engine

    try:
        found = llama_engine.resolve_base(base)
        if found is None:
            raise ModelError(f"--base {base}: give a .gguf file, or leave it out for the embedded model")
        adapter_dir = modellib.resolve_adapter(adapter, base)
        if adapter_dir is None and fmt == "lora":
            raise ModelError("--format lora needs an adapter (not --adapter none)")
        source = gguf_lora.ensure_format(adapter_dir, found[0], fmt) if adapter_dir else found[0]
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    target = Path(out).expanduser()
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    click.echo(f"wrote {target} ({target.stat().st_size / 1e6:.0f} MB, from {source.name})")


@main.command()
@click.option("--base", default=None, metavar="NAME|FILE.gguf", help="Base model to check (default: best where installed, else fast).")
@click.option("--adapter", default=None, metavar="DIR|NAME|none", help="Adapter (default: the base's shipped one).")
@click.option("--check", is_flag=True, help="Run the engine self-check now if this machine has no verdict yet.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def doctor(base, adapter, check, as_json):
    """Report Python, CPU, llama.cpp, engine choice and model files, for a bug report."""
    from batplots.cli import doctor as doctorlib

    rep = doctorlib.report(adapter, run_check=check, base_spec=base)
    click.echo(json.dumps(rep, indent=1) if as_json else doctorlib.format_text(rep))
    if rep["problems"]:
        sys.exit(1)


main.add_command(users)  # batplots users add|list|remove|passwd (batplots/cli/accounts.py)
main.add_command(db_group)  # batplots db migrate|copy (batplots/cli/db.py)
main.add_command(scrape)  # batplots scrape (batplots/cli/corpus.py)
main.add_command(corpus_group)  # batplots corpus stats|import-text

if __name__ == "__main__":
    main()
main.add_command(lore_command)  # batplots lore (batplots/cli/lore.py)
