"""The corpus: episodes with their plots, read from JSONL or plain text.

Two routes lead here and both feed training the same way: `batplots scrape`
writes JSONL from the wiki, and `batplots corpus import-text` wraps a plain
text corpus (such as ../shared/data/batman66.txt, one line with the episodes
run on) into the same records. `clean_plot` and `split_text_into_episodes` are
pure so each rule has a focused test.
"""

from __future__ import annotations

import html
import json
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from batplots.files import atomic_write_text, sha256_file
from batplots.text import normalize_whitespace, sentence_spans

# Larger files are refused: a corpus of plot summaries is megabytes at most, and
# a bigger file is far more likely a wrong path (a model, an archive).
MAX_CORPUS_BYTES = 256 * 1024 * 1024
JSON_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})

# Sentences that open an episode in run-on text: the summaries of two-parters
# start their second half this way (seen in the shared corpus: "Picking up from
# the last episode", "The story begins with", "In the former episode", "From the
# previous episode"). Matched at the start of a sentence only.
EPISODE_OPENERS = re.compile(
    r"(?:Picking up (?:from|where)|Continuing (?:from|where)|Continued from|The story (?:begins|opens)"
    r"|The series opens|(?:In|From|At the end of) (?:the|last) (?:former|previous|last|prior) (?:episode|week)"
    r"|(?:In|From) (?:the )?(?:previous|last|former) (?:night's |week's )?episode"
    r"|Previously on|Last (?:time|week)\b)",
)
# Scraped text joined into one line keeps a run of two or more spaces between
# episodes (single spaces inside them): in the shared corpus every such gap sits
# at an episode boundary.
_GAP_RE = re.compile(r"[ \t]{2,}")
_BLANK_LINE_RE = re.compile(r"\n[ \t]*\n")


class CorpusError(ValueError):
    """A corpus file could not be read; the message says which file, where and what is allowed."""


@dataclass
class Episode:
    title: str
    plot: str
    season: int | None = None
    episode: int | None = None
    air_date: str | None = None
    villains: list[str] = field(default_factory=list)
    url: str | None = None
    revid: int | None = None
    fetched_at: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, default_title: str = "") -> "Episode":
        """Build an Episode from a JSON object; raises CorpusError naming the bad field."""
        if not isinstance(data, dict):
            raise CorpusError(f"an episode must be a JSON object, got {type(data).__name__}")
        plot = data.get("plot")
        if not isinstance(plot, str) or not plot.strip():
            raise CorpusError("the record has no 'plot' (a non-empty string is required)")
        title = data.get("title", default_title)
        if title is None:
            title = default_title
        if not isinstance(title, str):
            raise CorpusError(f"'title' must be a string, got {type(title).__name__}")
        kwargs: dict = {"title": title, "plot": plot}
        for name in ("season", "episode", "revid"):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise CorpusError(f"'{name}' must be an integer or null, got {value!r}")
            kwargs[name] = value
        for name in ("air_date", "url", "fetched_at"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise CorpusError(f"'{name}' must be a string or null, got {value!r}")
            kwargs[name] = value
        villains = data.get("villains") or []
        if not isinstance(villains, list) or not all(isinstance(v, str) for v in villains):
            raise CorpusError(f"'villains' must be a list of strings, got {villains!r}")
        kwargs["villains"] = list(villains)
        return cls(**kwargs)


# ---------------------------------------------------------------- pure text rules

_COMMENT_RE = re.compile(r"<!--.*?(?:-->|$)", re.S)
_REF_RE = re.compile(r"<ref\b[^>/]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_INNER_TEMPLATE_RE = re.compile(r"\{\{[^{}]*\}\}")
_INNER_TABLE_RE = re.compile(r"\{\|[^{}]*?\|\}", re.S)
_MEDIA_LINK_RE = re.compile(r"\[\[\s*(?:File|Image|Category|Media)\s*:[^\[\]]*\]\]", re.I)
_LINK_RE = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]")
_EXT_LINK_RE = re.compile(r"\[(?:https?:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_BOLD_ITALIC_RE = re.compile(r"'{2,}")
_BR_RE = re.compile(r"<br\s*/?>", re.I)
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_HEADING_RE = re.compile(r"^\s*=+\s*(.*?)\s*=+\s*$", re.M)
# Curly quotes become straight ones: most of the corpus uses straight quotes, the
# sentence splitter pairs straight double quotes, and one style means the model
# learns one style. Apostrophes (’) become ' for the same reason.
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"',
                         "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "″": '"'})
# What removed markup leaves behind: "Batman ({{actor}})" -> "Batman ()", "Joker {{ref}}." -> "Joker ."
_EMPTY_BRACKETS_RE = re.compile(r"\s*\(\s*\)|\s*\[\s*\]")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"(?<=\w)\s+(?=[.,;:!?](?:\s|$))")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def _remove_nested(pattern: re.Pattern, text: str) -> str:
    """Remove innermost matches until none is left, so nesting of any depth goes."""
    while True:
        new = pattern.sub("", text)
        if new == text:
            return text
        text = new


def clean_plot(text: str) -> str:
    """Plain prose from a plot that may carry stray wiki markup.

    Keeps paragraphs (one per line, whitespace collapsed inside each), the
    visible text of links, and the words inside bold/italic; drops comments,
    references, templates, tables, files, categories and HTML tags; unescapes
    entities; NFC-normalises and straightens curly quotes (see _QUOTES).
    """
    text = _COMMENT_RE.sub("", text)
    text = _REF_RE.sub("", text)
    text = _remove_nested(_INNER_TEMPLATE_RE, text)
    text = _remove_nested(_INNER_TABLE_RE, text)
    # File captions may hold links: resolve inner links first, then drop the media link.
    while True:
        new = _MEDIA_LINK_RE.sub("", text)
        new = _LINK_RE.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(1), new)
        if new == text:
            break
        text = new
    text = _EXT_LINK_RE.sub(lambda m: m.group(1) or "", text)
    text = _BOLD_ITALIC_RE.sub("", text)
    text = _HEADING_RE.sub(r"\1", text)
    text = _BR_RE.sub("\n", text)
    text = _TAG_RE.sub("", text)
    # Twice: wiki text often double-escapes (&amp;amp;); plain prose never needs a literal entity.
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFC", text).translate(_QUOTES).translate(_INVISIBLE)
    text = text.replace("\u00a0", " ").replace("\r\n", "\n").replace("\r", "\n")
    text = _EMPTY_BRACKETS_RE.sub("", text)
    paragraphs = (_SPACE_BEFORE_PUNCT_RE.sub("", normalize_whitespace(p)) for p in text.split("\n"))
    return "\n".join(p for p in paragraphs if p)


def split_text_into_episodes(text: str) -> list[str]:
    """Split a plain-text corpus into episode plots.

    A text with blank lines between episodes (what `scrape --text` writes) splits
    on the blank lines. A run-on text splits at sentence boundaries where a run of
    two or more spaces separates the sentences (how a scraped one-line corpus
    joins episodes) or where the next sentence opens an episode (EPISODE_OPENERS).
    Paragraph breaks inside an episode are kept; other whitespace is collapsed.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _BLANK_LINE_RE.search(text.strip()):
        chunks = _BLANK_LINE_RE.split(text)
        return [ep for ep in (_tidy(c) for c in chunks) if ep]
    spans, rest = sentence_spans(text, final=True)
    cuts = []
    for (_, prev_end), (start, _) in zip(spans, spans[1:]):
        gap = text[prev_end:start]
        if _GAP_RE.search(gap) or EPISODE_OPENERS.match(text, start):
            cuts.append(start)
    if rest < len(text) and spans and (_GAP_RE.search(text[spans[-1][1]:rest]) or EPISODE_OPENERS.match(text, rest)):
        cuts.append(rest)  # an unfinished last episode after a gap still stands alone
    bounds = [0, *cuts, len(text)]
    episodes = (_tidy(text[a:b]) for a, b in zip(bounds, bounds[1:]))
    return [ep for ep in episodes if ep]


def _tidy(chunk: str) -> str:
    lines = (normalize_whitespace(line) for line in chunk.split("\n"))
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------- files

def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data:
        raise CorpusError(f"{path} looks binary (it has NUL bytes); a corpus is UTF-8 text: "
                          "JSONL records with a 'plot' field, or plain text")
    offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path} is not UTF-8: invalid byte 0x{data[offset + exc.start]:02x} at byte offset "
                          f"{offset + exc.start}; save it as UTF-8") from None


# A plain-text corpus has no titles: an episode is named by its opening words and its
# villain (the one the plot names first), which a fan recognises, not by a number.
TITLE_WORDS = 8
VILLAINS = ("Joker", "Penguin", "Riddler", "Catwoman", "Mr. Freeze", "Mad Hatter", "King Tut", "Egghead", "Bookworm",
            "False Face", "Shame", "Zelda", "Ma Parker", "Archer", "Black Widow", "Siren", "Minstrel", "Sandman",
            "Puzzler", "Clock King", "Louie the Lilac", "Marsha", "Olga", "Lord Ffogg", "Nora Clavicle", "Chandell",
            "Mr. Zodiac", "Dr. Cassandra", "Minerva", "Lola Lasagne", "Colonel Gumm", "Lord Marmaduke Ffogg")


def plain_title(plot: str) -> str:
    """A title for an episode of a plain-text corpus: its opening words, and its villain."""
    words = plot.split()
    opening = " ".join(words[:TITLE_WORDS]).rstrip(",;:") + ("…" if len(words) > TITLE_WORDS else "")
    found = [(plot.find(v), v) for v in VILLAINS if re.search(rf"\b{re.escape(v)}\b", plot)]
    if not found:
        return f"“{opening}”"
    villain = min(found)[1]
    return f"“{opening}” ({villain})"


def read_corpus(path: str | os.PathLike) -> list[Episode]:
    """Read a corpus file: JSONL (one object with a 'plot' per line; also a JSON array)
    or plain text (split with split_text_into_episodes). Raises CorpusError."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path} does not exist; pass a .jsonl from `batplots scrape` or a plain text file")
    if not path.is_file():
        raise CorpusError(f"{path} is not a file; pass a .jsonl from `batplots scrape` or a plain text file")
    size = path.stat().st_size
    if size > MAX_CORPUS_BYTES:
        raise CorpusError(f"{path} is {size:,} bytes; a corpus may be at most {MAX_CORPUS_BYTES:,} bytes")
    text = _decode(path, path.read_bytes())
    stripped = text.lstrip()
    if not stripped:
        raise CorpusError(f"{path} is empty; a corpus needs at least one episode plot")
    if path.suffix.lower() in JSON_SUFFIXES or stripped[0] in "{[":
        episodes = _read_json(path, text)
    else:
        episodes = [Episode(title=plain_title(plot), plot=plot) for plot in split_text_into_episodes(text)]
    if not episodes:
        raise CorpusError(f"{path} holds no episodes; a corpus needs at least one episode plot")
    return episodes


def _read_json(path: Path, text: str) -> list[Episode]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        numbered = list(enumerate(records, 1))
        where = "item"
    else:
        numbered = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path} line {lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
                                  "each line must be one JSON object with a 'plot' field") from None
        where = "line"
    episodes = []
    for n, record in numbered:
        if not isinstance(record, dict):
            raise CorpusError(f"{path} {where} {n}: expected a JSON object with a 'plot' field, "
                              f"got {type(record).__name__}")
        try:
            episodes.append(Episode.from_dict(record, default_title=f"{path.stem} #{len(episodes) + 1}"))
        except CorpusError as exc:
            raise CorpusError(f"{path} {where} {n}: {exc}") from None
    return episodes


def episodes_to_jsonl(episodes: list[Episode]) -> str:
    return "".join(json.dumps(ep.to_dict(), ensure_ascii=False) + "\n" for ep in episodes)


def episodes_to_text(episodes: list[Episode]) -> str:
    """Plots joined with a blank line between episodes (the plain form training reads)."""
    return "\n\n".join(ep.plot.strip() for ep in episodes) + "\n" if episodes else ""


def write_jsonl(path: str | os.PathLike, episodes: list[Episode]) -> None:
    """Write episodes as JSONL, atomically."""
    atomic_write_text(path, episodes_to_jsonl(episodes))


def write_text(path: str | os.PathLike, episodes: list[Episode]) -> None:
    """Write the plots as plain text with a blank line between episodes, atomically."""
    atomic_write_text(path, episodes_to_text(episodes))


def corpus_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a corpus file's bytes (recorded in model cards)."""
    return sha256_file(path)


# ---------------------------------------------------------------- statistics and provenance

WIKI_LICENSE = "CC BY-SA 3.0"


def _counts(episodes: list[Episode], tokens: list[int] | None) -> dict:
    words = sum(len(ep.plot.split()) for ep in episodes)
    out = {"episodes": len(episodes), "words": words}
    if tokens is not None:
        out["tokens"] = sum(tokens)
    return out


def compute_stats(episodes: list[Episode], count_tokens=None) -> dict:
    """Episodes, words, tokens (when count_tokens(text) -> int is given), per-season counts
    (key "unknown" for episodes without a season) and the shortest/longest episode by words."""
    tokens = [count_tokens(ep.plot) for ep in episodes] if count_tokens else None
    stats = _counts(episodes, tokens)
    seasons: dict[str, list[int]] = {}
    for i, ep in enumerate(episodes):
        seasons.setdefault("unknown" if ep.season is None else str(ep.season), []).append(i)
    order = sorted(seasons, key=lambda k: (k == "unknown", int(k) if k.isdigit() else 0, k))
    stats["per_season"] = {
        key: _counts([episodes[i] for i in seasons[key]], [tokens[i] for i in seasons[key]] if tokens else None)
        for key in order}
    if episodes:
        lengths = [len(ep.plot.split()) for ep in episodes]
        for name, pick in (("shortest", min), ("longest", max)):
            i = lengths.index(pick(lengths))
            stats[name] = {"title": episodes[i].title, "words": lengths[i]}
            if tokens:
                stats[name]["tokens"] = tokens[i]
    return stats


def format_stats(stats: dict) -> str:
    """A short human-readable table of compute_stats' result."""
    tok = "tokens" in stats

    def row(label, c):
        return f"{label:<12}{c['episodes']:>9,}{c['words']:>10,}" + (f"{c['tokens']:>10,}" if tok else "")

    lines = [f"{'':<12}{'episodes':>9}{'words':>10}" + (f"{'tokens':>10}" if tok else ""), row("total", stats)]
    for key, counts in stats["per_season"].items():
        lines.append(row("season " + key if key != "unknown" else "no season", counts))
    for name in ("shortest", "longest"):
        if name in stats:
            s = stats[name]
            lines.append(f"{name}: {s['title']} ({s['words']:,} words" +
                         (f", {s['tokens']:,} tokens)" if "tokens" in s else ")"))
    return "\n".join(lines)


def provenance(episodes: list[Episode]) -> dict:
    """What a model card must record about a corpus: the source wiki(s), each page's
    title, revid and URL, and the CC BY-SA attribution (empty sources for plain text)."""
    pages = [{"title": ep.title, "revid": ep.revid, "url": ep.url} for ep in episodes if ep.url]
    wikis = sorted({ep.url.split("/wiki/", 1)[0] for ep in episodes if ep.url and "/wiki/" in ep.url})
    attribution = (f"Plot summaries from {', '.join(wikis)} (the pages listed, at the revisions listed), "
                   f"licensed {WIKI_LICENSE}." if wikis else None)
    return {"wikis": wikis, "pages": pages, "license": WIKI_LICENSE if wikis else None, "attribution": attribution}
