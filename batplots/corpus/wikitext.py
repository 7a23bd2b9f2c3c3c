"""Reading MediaWiki wikitext with mwparserfromhell: episode lists, plot sections, infoboxes.

Pure functions from wikitext to plain data, so the scraper's network code and
these rules are tested apart. The output prose goes through corpus.clean_plot,
the same normalisation the plain-text import uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import mwparserfromhell as mw
from mwparserfromhell.nodes import (
    Argument, Comment, ExternalLink, Heading, HTMLEntity, Tag, Template, Text, Wikilink,
)

from batplots.corpus.episodes import clean_plot

DEFAULT_SECTIONS = ("Plot", "Synopsis", "Summary")
# Link namespaces whose text is never prose (images, categories, interwiki files).
HIDDEN_NAMESPACES = frozenset({"file", "image", "media", "category"})
# Tags whose content is not part of the visible prose.
HIDDEN_TAGS = frozenset({"ref", "references", "gallery", "table", "math", "nowiki", "pre", "source",
                         "syntaxhighlight", "timeline", "imagemap", "score", "templatedata", "noinclude"})
LINE_BREAK_TAGS = frozenset({"br", "li", "dt", "dd", "hr", "p", "div"})
DISAMBIGUATION_TEMPLATES = frozenset({"disambig", "disambiguation", "dab", "disamb", "disambiguation page",
                                      "set index", "surname", "given name"})
_REDIRECT_RE = re.compile(r"\s*#REDIRECT\s*:?\s*\[\[([^\]|#]+)", re.I)
_INT_RE = re.compile(r"\d+")
_SEASON_RE = re.compile(r"\b(?:season|series)\s+(\d+|one|two|three|four|five)\b", re.I)
_WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}

# Infobox parameter names (lower case, spaces for underscores, "(s)" removed).
AIR_DATE_KEYS = ("airdate", "air date", "original air date", "original airdate", "aired", "first aired",
                 "broadcast", "air", "release date", "date")
SEASON_KEYS = ("season", "series", "season number")
EPISODE_KEYS = ("episode", "episode number", "episode no", "episode no.", "no", "no.", "number", "ep")
VILLAIN_KEYS = ("villain", "villains", "special guest villain", "guest villain", "antagonist", "antagonists")
TITLE_PARAMS = ("title", "episode title", "name")
NUMBER_HEADERS = ("no. in season", "# in season", "no", "no.", "#", "ep", "ep.", "episode", "episode no.",
                  "number", "№")


@dataclass
class ListEntry:
    title: str
    season: int | None = None
    episode: int | None = None


@dataclass
class PageInfo:
    """What an episode page gives: the plot (or why there is none) and its infobox fields."""

    plot: str | None
    skip_reason: str | None = None
    season: int | None = None
    episode: int | None = None
    air_date: str | None = None
    villains: list[str] = field(default_factory=list)


def normalize_title(title: str) -> str:
    """A link target as MediaWiki names the page: no fragment, spaces, first letter upper-case."""
    title = title.split("#", 1)[0].replace("_", " ")
    title = re.sub(r"\s+", " ", title).strip().lstrip(":")
    return title[:1].upper() + title[1:]


def redirect_target(wikitext: str) -> str | None:
    """The target of a redirect page ("#REDIRECT [[X]]"), else None."""
    m = _REDIRECT_RE.match(wikitext)
    return normalize_title(m.group(1)) if m else None


def _namespace(link: Wikilink) -> str:
    title = str(link.title).strip().lstrip(":")
    return title.split(":", 1)[0].strip().lower() if ":" in title else ""


def plain_text(code) -> str:
    """The visible text of wikicode: link text kept, templates, refs, tables, files, comments dropped."""
    out: list[str] = []
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Wikilink):
            if _namespace(node) not in HIDDEN_NAMESPACES:
                out.append(plain_text(node.text) if node.text is not None else str(node.title).lstrip(":"))
        elif isinstance(node, ExternalLink):
            if node.title is not None:
                out.append(plain_text(node.title))
        elif isinstance(node, Tag):
            tag = str(node.tag).strip().lower()
            if tag in HIDDEN_TAGS:
                continue
            if tag in LINE_BREAK_TAGS:
                out.append("\n")
            if node.contents is not None and not node.self_closing:
                out.append(plain_text(node.contents))
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, Heading):
            out.append("\n")  # subsection headings are not prose
        elif isinstance(node, (Template, Comment, Argument)):
            continue
        else:
            out.append(str(node))
    return "".join(out)


def _clean_param_name(name) -> str:
    return re.sub(r"\s+", " ", str(name).replace("_", " ").replace("(s)", "")).strip().lower()


def _first_int(text: str) -> int | None:
    m = _INT_RE.search(text)
    return int(m.group()) if m else None


def _find_infobox(code) -> Template | None:
    for template in code.filter_templates(recursive=False):
        name = _clean_param_name(template.name)
        if "infobox" in name or name in ("episode", "tv episode", "episode info"):
            return template
    return None


def _villains(value) -> list[str]:
    """Villain names from an infobox value: each link's text, else the text split on breaks and commas."""
    links = [l for l in value.filter_wikilinks() if _namespace(l) not in HIDDEN_NAMESPACES]
    if links:
        names = [clean_plot(plain_text(l.text) if l.text is not None else str(l.title)) for l in links]
    else:
        names = [clean_plot(part) for part in re.split(r"\n|,|;|&| and ", plain_text(value))]
    seen: list[str] = []
    for name in names:
        name = name.strip(" *#:")
        if name and name not in seen:
            seen.append(name)
    return seen


def read_infobox(code) -> dict:
    """air_date, season, episode and villains from the page's infobox (missing ones are left out)."""
    box = _find_infobox(code)
    if box is None:
        return {}
    found: dict = {}
    for param in box.params:
        key = _clean_param_name(param.name)
        value = param.value
        text = clean_plot(plain_text(value))
        if not text:
            continue
        if key in AIR_DATE_KEYS and "air_date" not in found:
            found["air_date"] = text.replace("\n", "; ")
        elif key in SEASON_KEYS and "season" not in found:
            found["season"] = _first_int(text)
        elif key in EPISODE_KEYS and "episode" not in found:
            found["episode"] = _first_int(text)
        elif key in VILLAIN_KEYS and "villains" not in found:
            found["villains"] = _villains(value)
    return {k: v for k, v in found.items() if v not in (None, [])}


def is_disambiguation(code, wikitext: str) -> bool:
    if "__DISAMBIG__" in wikitext:
        return True
    for template in code.filter_templates():
        name = _clean_param_name(template.name)
        if name in DISAMBIGUATION_TEMPLATES or name.startswith("disambig"):
            return True
    return any(_namespace(l) == "category" and "disambiguation" in str(l.title).lower()
               for l in code.filter_wikilinks())


def _heading_matcher(names: tuple[str, ...]):
    wanted = [n.strip().lower() for n in names]

    def matches(heading_title: str) -> str | None:
        title = clean_plot(plain_text(mw.parse(heading_title))).lower()
        for name in wanted:
            if title == name or title.startswith(name + " ") or title.startswith(name + ":"):
                return name
        return None

    return matches


def plot_section(code, names: tuple[str, ...] = DEFAULT_SECTIONS):
    """The wikicode under the first heading named like one of names (in that order of
    preference), subsections included, or None."""
    matcher = _heading_matcher(names)
    by_name: dict[str, object] = {}
    for section in code.get_sections(include_lead=False, include_headings=True):
        heading = section.nodes[0]
        name = matcher(str(heading.title))
        if name and name not in by_name:
            body = mw.parse(str(section))
            body.remove(body.nodes[0])  # the heading itself
            by_name[name] = body
    for name in (n.strip().lower() for n in names):
        if name in by_name:
            return by_name[name]
    return None


def read_episode_page(wikitext: str, section_names: tuple[str, ...] = DEFAULT_SECTIONS) -> PageInfo:
    """Plot and infobox of an episode page, or a skip reason (redirect, disambiguation, empty, no plot)."""
    if not wikitext.strip():
        return PageInfo(plot=None, skip_reason="empty page")
    target = redirect_target(wikitext)
    if target:
        return PageInfo(plot=None, skip_reason=f"redirect to {target!r} that the wiki did not resolve "
                                               "(a double or broken redirect)")
    code = mw.parse(wikitext)
    if is_disambiguation(code, wikitext):
        return PageInfo(plot=None, skip_reason="disambiguation page")
    fields = read_infobox(code)
    section = plot_section(code, section_names)
    if section is None:
        return PageInfo(plot=None, skip_reason=f"no {'/'.join(section_names)} section", **fields)
    plot = clean_plot(plain_text(section))
    if not plot:
        return PageInfo(plot=None, skip_reason=f"the {'/'.join(section_names)} section is empty", **fields)
    return PageInfo(plot=plot, **fields)


# ---------------------------------------------------------------- the list page

def _link_titles(code) -> list[str]:
    return [normalize_title(str(l.title)) for l in code.filter_wikilinks()
            if _namespace(l) not in HIDDEN_NAMESPACES and normalize_title(str(l.title))]


def _table_rows(table: Tag) -> list[list[Tag]]:
    """Cells of each row; header cells written before the first |- form an implicit first row."""
    rows: list[list[Tag]] = []
    loose: list[Tag] = []
    for node in table.contents.nodes:
        if not isinstance(node, Tag):
            continue
        tag = str(node.tag).lower()
        if tag in ("th", "td"):
            loose.append(node)
        elif tag == "tr":
            if loose:
                rows.append(loose)
                loose = []
            rows.append([c for c in node.contents.filter_tags(recursive=False)
                         if str(c.tag).lower() in ("th", "td")])
    if loose:
        rows.append(loose)
    return rows


def _season_of(heading: Heading) -> int | None:
    m = _SEASON_RE.search(str(heading.title))
    if not m:
        return None
    word = m.group(1).lower()
    return _WORD_NUMBERS.get(word) or int(word)


def list_entries(wikitext: str, list_title: str = "") -> list[ListEntry]:
    """Episode titles linked from a list page, in page order, each once.

    Understands wikitables (the "Title" column, or the first linked cell; the
    episode number from a "No."/"#"/"Episode" column), bullet or numbered lists
    (the first link of each item) and episode templates with a Title parameter.
    "Season N" headings set the season; without a number column, episodes are
    numbered by their order within the season.
    """
    code = mw.parse(wikitext)
    entries: list[ListEntry] = []
    seen = {normalize_title(list_title)} if list_title else set()
    season: int | None = None
    counter = 0

    def add(title: str | None, number: int | None = None) -> None:
        nonlocal counter
        if not title or title in seen:
            return
        seen.add(title)
        counter += 1
        episode = number if number is not None else (counter if season is not None else None)
        entries.append(ListEntry(title=title, season=season, episode=episode))

    nodes = code.nodes
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if isinstance(node, Heading):
            found = _season_of(node)
            if found is not None:
                season, counter = found, 0
        elif isinstance(node, Tag) and str(node.tag).lower() == "table":
            headers: list[str] = []
            for cells in _table_rows(node):
                if all(str(c.tag).lower() == "th" for c in cells):
                    headers = [clean_plot(plain_text(c.contents)).lower() for c in cells]
                    continue
                title_col = next((k for k, h in enumerate(headers) if "title" in h), None)
                candidates = [cells[title_col]] if title_col is not None and title_col < len(cells) else cells
                title = next((t for c in candidates for t in _link_titles(c.contents)), None)
                number = None
                for name in NUMBER_HEADERS:
                    if name in headers and headers.index(name) < len(cells):
                        number = _first_int(plain_text(cells[headers.index(name)].contents))
                        if number is not None:
                            break
                add(title, number)
        elif isinstance(node, Tag) and str(node.tag).lower() == "li":
            # A list item is the li tag and the nodes after it up to the end of the line.
            j = i + 1
            while j < len(nodes) and not (isinstance(nodes[j], Text) and "\n" in nodes[j].value):
                if isinstance(nodes[j], Wikilink) and _namespace(nodes[j]) not in HIDDEN_NAMESPACES:
                    add(normalize_title(str(nodes[j].title)))
                    break
                j += 1
        elif isinstance(node, Template):
            params = {_clean_param_name(p.name): p.value for p in node.params}
            title_value = next((params[k] for k in TITLE_PARAMS if k in params), None)
            if title_value is not None:
                links = _link_titles(title_value)
                title = links[0] if links else normalize_title(clean_plot(plain_text(title_value)).strip('"'))
                number_value = next((params[k] for k in EPISODE_KEYS if k in params), None)
                if number_value is None:
                    number_value = next((v for k, v in params.items() if "episodenumber" in k.replace(" ", "")), None)
                add(title, _first_int(plain_text(number_value)) if number_value is not None else None)
        i += 1
    return entries
