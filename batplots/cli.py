"""The `batplots` command line. Each command's docstring is its help text."""

from __future__ import annotations

import json
import sys
import time

import click

from batplots.engine import EngineSpec, Settings, SettingsError
from batplots.engine import base as eb
from batplots.model import ModelError


def engine_options(func):
    """--engine/--base/--adapter: which model to load (shared by every model command)."""
    from batplots.engine import ENGINES

    func = click.option("--adapter", default=None, metavar="DIR|NAME|none",
                        help="PEFT adapter directory; default: the shipped batman66 adapter; 'none': bare base.")(func)
    func = click.option("--base", default=None, metavar="NAME_OR_DIR",
                        help="Base model: a Hugging Face model directory or cached name; default: embedded SmolLM2-135M-Instruct.")(func)
    func = click.option("--engine", "engine_name", type=click.Choice(ENGINES), default="auto", show_default=True,
                        help="Generation backend.")(func)
    return func


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


def make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context) -> Settings:
    """Validated Settings from CLI values; a bad value becomes a usage error naming its range."""
    try:
        return Settings(sentences=sentences, seed=seed, temperature=temperature, top_p=top_p, top_k=top_k,
                        repetition_penalty=repetition_penalty, max_context=max_context).validate()
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc


def open_engine(engine_name: str, base: str | None, adapter: str | None):
    """Load the engine or exit with the model error's message (what to install / which path)."""
    from batplots.engine import load_engine

    try:
        return load_engine(EngineSpec(engine=engine_name, base=base, adapter=adapter))
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(package_name="batplots")
def main():
    """Co-write new episodes of the 1966 Batman TV series with a small language model."""


@main.command()
@click.argument("prompt")
@sampling_options
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the story.")
def generate(prompt, sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context,
             engine_name, base, adapter, as_json):
    """Continue PROMPT with N complete sentences."""
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty; write a sentence or two to continue", param_hint="PROMPT")
    settings = make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context)
    engine = open_engine(engine_name, base, adapter)
    started = time.perf_counter()
    if as_json:
        result = engine.run(prompt, settings)
        click.echo(json.dumps({
            "prompt": prompt,
            "continuation": result.text.strip(),
            "sentences": result.sentences,
            "settings": result.settings.to_dict(),
            "seconds": round(time.perf_counter() - started, 3),
            "tokens": result.tokens,
            "trimmed": result.trimmed,
            "model": engine.describe(),
        }, ensure_ascii=False))
        return
    click.echo(prompt, nl=False)
    _, result = stream_to_terminal(engine.stream(prompt, settings))
    click.echo()
    if result.trimmed:
        click.echo("(the token cap cut the last sentence, so it was left out)", err=True)


def stream_to_terminal(stream):
    """Print a stream's pieces as they come (on a terminal), redrawing the draft on a
    Rewind; elsewhere (a pipe) print only the final text, so pipes get clean output."""
    draft = ""
    while True:
        try:
            event = next(stream)
        except StopIteration as stop:
            if not sys.stdout.isatty():
                click.echo(stop.value.text, nl=False)
            return draft, stop.value
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


@main.command()
@sampling_options
@engine_options
def write(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context, engine_name, base, adapter):
    """Co-write in the terminal: you write a sentence or two, the model adds N (/help for commands)."""
    from batplots.write import WriteSession

    settings = make_settings(sentences, seed, temperature, top_p, top_k, repetition_penalty, max_context)
    click.echo("Loading the model...", err=True)
    engine = open_engine(engine_name, base, adapter)
    WriteSession(engine, settings).loop(sys.stdin)


if __name__ == "__main__":
    main()
