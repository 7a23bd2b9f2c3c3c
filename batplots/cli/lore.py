"""`batplots lore`: the show's cast, villains, places, gadgets and beats from a corpus
(registered by batplots.cli.main)."""

from __future__ import annotations

import json

import click


def _summary(lore, top: int = 10) -> str:
    lines = [f"{'villain':<18}{'mentions':>9}{'episodes':>9}  henchmen / objects"]
    for name, v in list(lore.villains.items())[:top]:
        hench = ", ".join(v.get("henchmen", [])[:4]) or "-"
        objects = ", ".join(v.get("objects", [])[:4]) or "-"
        lines.append(f"{name:<18}{v['count']:>9}{len(v['episodes']):>9}  {hench} / {objects}")
    for title, section in (("cast", lore.characters), ("places", lore.places), ("gadgets", lore.gadgets)):
        shown = ", ".join(f"{n} {e['count']} ({len(e['episodes'])} ep.)" for n, e in list(section.items())[:top])
        lines.append(f"{title}: {shown or '-'}")
    total = sum(lore.beats.values())
    lines.append("beats (sentences): " + (", ".join(f"{b} {n}" for b, n in lore.beats.items()) or "-") +
                 f"; {total} labelled")
    return "\n".join(lines)


@click.command("lore")
@click.option("--corpus", "corpus_path", required=True, type=click.Path(dir_okay=False),
              help="The corpus: JSONL from `batplots scrape`, or plain text.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write lore.json into this directory (an adapter's) instead of printing a summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the lore as one JSON object.")
def lore(corpus_path, out_dir, as_json):
    """Build the show's lore (cast, villains, henchmen, places, gadgets, beats) from a corpus."""
    from batplots.corpus import episodes as c
    from batplots.story import lore as lorelib

    try:
        if out_dir is not None:
            path = lorelib.write_lore(corpus_path, out_dir)
            built = lorelib.load_lore(path.parent)
            if not as_json:
                click.echo(f"wrote {path}: {len(built.villains)} villains, {len(built.characters)} cast, "
                           f"{len(built.places)} places, {len(built.gadgets)} gadgets")
        else:
            built = lorelib.build_lore(c.read_corpus(corpus_path))
    except (c.CorpusError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        sha = c.corpus_sha256(corpus_path)
        click.echo(json.dumps(lorelib.lore_to_json(built, sha), ensure_ascii=False))
    elif out_dir is None:
        click.echo(_summary(built))
