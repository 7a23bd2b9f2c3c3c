"""`batplots scrape` and `batplots corpus stats|import-text`: building the corpus
(registered by batplots.cli.main)."""

from __future__ import annotations

import json
import sys

import click

# ---------------------------------------------------------------- building the corpus: scrape, corpus stats/import-text

from batplots.corpus import scrape as scraping  # light: httpx and mwparserfromhell, no model


@click.command()
@click.option("--wiki", default=scraping.DEFAULT_WIKI, show_default=True,
              help="The MediaWiki site; its Action API is {wiki}/api.php.")
@click.option("--list-page", default=scraping.DEFAULT_LIST_PAGE, show_default=True,
              help="The page whose links name the episode pages, in order.")
@click.option("--out", type=click.Path(dir_okay=False), default="episodes.jsonl", show_default=True,
              help="JSONL output: one record per episode.")
@click.option("--text", "text_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the plots as plain text, a blank line between episodes.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Response cache directory [default: $BATPLOTS_HOME/scrape-cache/HOST].")
@click.option("--delay", type=click.FloatRange(0, scraping.MAX_DELAY),
              default=scraping.DEFAULT_DELAY, show_default=True, help="Seconds between requests.")
@click.option("--offline", is_flag=True, help="Build the outputs from the cache alone; send no request.")
@click.option("--section", "sections", multiple=True, metavar="HEADING",
              help="Heading of the plot section, repeatable in order of preference [default: Plot, Synopsis, Summary].")
@click.option("--contact", default=None, metavar="EMAIL_OR_URL",
              help="Put in the User-Agent so the wiki's admins can reach you.")
@click.option("--retries", type=click.IntRange(0, scraping.MAX_RETRIES),
              default=scraping.DEFAULT_RETRIES, show_default=True,
              help="Retries per request on timeouts, 429 and 5xx answers.")
@click.option("--backoff", type=click.FloatRange(0, scraping.MAX_BACKOFF),
              default=scraping.DEFAULT_BACKOFF, show_default=True,
              help="First retry wait in seconds, doubled each retry (Retry-After wins).")
@click.option("--timeout", type=click.FloatRange(0.1, scraping.MAX_TIMEOUT),
              default=scraping.DEFAULT_TIMEOUT, show_default=True, help="Seconds to wait for an answer.")
def scrape(wiki, list_page, out, text_out, cache_dir, delay, offline, sections, contact, retries, backoff, timeout):
    """Build the corpus: episode plots from the wiki into JSONL (and plain text), politely and resumably."""
    client = None if offline else scraping.WikiClient(wiki, delay=delay, timeout=timeout, retries=retries,
                                                      backoff=backoff, contact=contact)
    try:
        scraper = scraping.Scraper(wiki=wiki, list_page=list_page, cache_dir=cache_dir, offline=offline,
                                   sections=tuple(sections) or scraping.DEFAULT_SECTIONS, client=client)
        try:
            result = scraper.run()
        except scraping.ScrapeError as exc:
            raise click.ClickException(str(exc)) from exc
    finally:
        if client is not None:
            client.close()
    if result.episodes:
        scraping.write_outputs(result, out, text_out)
    click.echo(scraping.summary(result, out if result.episodes else None, text_out if result.episodes else None))
    if not result.episodes:
        raise click.ClickException(f"no episode written, so {out} was left as it was")
    if result.failed:
        sys.exit(1)


@click.group("corpus")
def corpus_group():
    """Inspect and convert corpora (JSONL from `scrape`, or plain text)."""


@corpus_group.command("stats")
@click.argument("path", type=click.Path())
@click.option("--tokenizer", default=None, metavar="DIR|none",
              help="Count tokens with this tokenizer; default: the embedded base model's; 'none': no token counts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def corpus_stats(path, tokenizer, as_json):
    """Episodes, words, tokens, per-season counts and the shortest/longest episode of PATH."""
    from batplots.corpus import episodes as c
    from batplots.model.weights import ModelError, load_tokenizer

    try:
        episodes = c.read_corpus(path)
        tok = load_tokenizer(tokenizer)
    except (c.CorpusError, ModelError) as exc:
        raise click.ClickException(str(exc)) from exc
    count = (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])) if tok is not None else None
    stats = c.compute_stats(episodes, count)
    if as_json:
        click.echo(json.dumps({"path": str(path), **stats}, ensure_ascii=False))
    else:
        click.echo(f"{path}\n{c.format_stats(stats)}")


@corpus_group.command("import-text")
@click.argument("path", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The JSONL file to write.")
@click.option("--raw", is_flag=True, help="Keep each plot's text as it is (no markup/quote clean-up).")
def corpus_import_text(path, out, raw):
    """Wrap a plain text corpus into episode JSONL, splitting it into episodes where it can."""
    from batplots.corpus import episodes as c

    try:
        episodes = c.read_corpus(path)
    except c.CorpusError as exc:
        raise click.ClickException(str(exc)) from exc
    if not raw:
        for ep in episodes:
            ep.plot = c.clean_plot(ep.plot)
        episodes = [ep for ep in episodes if ep.plot]
    c.write_jsonl(out, episodes)
    words = sum(len(ep.plot.split()) for ep in episodes)
    click.echo(f"imported {len(episodes)} episodes ({words:,} words) from {path} to {out}")
