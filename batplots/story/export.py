"""Stories as Markdown, plain text and the read-only share page.

Pure functions of a story dict. Authorship is marked in every form (author_label:
what happened to a passage), and user text is escaped for each: HTML is
entity-escaped in the page, Markdown markup (raw HTML included) backslash-escaped in
Markdown, so no script ever runs and the text reads as written.
"""

from __future__ import annotations

import html
import re

from batplots.story.casefile import FIELD_LABELS, FIELDS
from batplots.text import strip_controls

MODEL_NAME = "Model"  # one name for the model: page, exports, share page and terminal
AUTHOR_LABELS = {"user": "You", "model": MODEL_NAME}
EDITED_MODEL_LABEL = f"{MODEL_NAME}, edited by you"
# An edited model passage is still credited to the model while a run of this many of
# its words is left; with none left the writer rewrote it and it is theirs.
KEPT_RUN_WORDS = 3
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# Markdown escapes (CommonMark lets a backslash escape any ASCII punctuation): inline
# markup and raw HTML anywhere, block markup where a line starts.
_MD_INLINE = re.compile(r"([\\`*_\[\]~<>&|])")
_MD_LINE_START = re.compile(r"^(\s*)([#+\-=>])", re.MULTILINE)
_MD_ORDERED = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)  # "1." starts a list: escape the dot
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# In the plain-text export a passage's later lines are indented by this, so only a
# real label starts a line with "[": a passage cannot forge another's authorship.
TXT_INDENT = "    "


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def model_original(turn: dict) -> str | None:
    """The model's own text of a turn before any edit (its chosen take, or the
    sentences its provenance describes), or None when the turn kept neither."""
    meta = turn.get("meta") or {}
    for cand in meta.get("candidates") or []:
        if cand.get("chosen") and cand.get("text"):
            return cand["text"]
    prov = meta.get("provenance") or []
    return " ".join(p["text"] for p in prov) if prov else None


def author_label(turn: dict) -> str:
    """Who wrote a passage: "You", "Model", or "Model, edited by you"; a model passage
    rewritten with nothing of the model's text left is the writer's ("You")."""
    if turn["author"] != "model":
        return AUTHOR_LABELS["user"]
    if not turn.get("edited"):
        return MODEL_NAME
    original = model_original(turn)
    if original is None:
        return EDITED_MODEL_LABEL  # unknown: say the model wrote it, and it was edited
    ours, now = _words(original), _words(turn["text"])
    n = min(KEPT_RUN_WORDS, len(ours), len(now))  # a passage cut short keeps a shorter run
    if n == 0:
        return AUTHOR_LABELS["user"]
    runs = {tuple(ours[i:i + n]) for i in range(len(ours) - n + 1)}
    kept = any(tuple(now[i:i + n]) in runs for i in range(len(now) - n + 1))
    return EDITED_MODEL_LABEL if kept else AUTHOR_LABELS["user"]


def credited_to_model(turn: dict) -> bool:
    return author_label(turn) != AUTHOR_LABELS["user"]


def paragraphs(text: str) -> list[str]:
    """A passage's paragraphs: a blank line starts a new one; single line breaks are kept
    inside a paragraph."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(strip_controls(text)) if p.strip()]


def md_escape(text: str) -> str:
    """Text that Markdown shows literally: a backslash before each character Markdown
    (or the raw HTML it allows) would treat as markup, and before block markup at the
    start of a line; control characters, which older databases may hold, are dropped."""
    escaped = _MD_INLINE.sub(r"\\\1", strip_controls(text))
    return _MD_ORDERED.sub(r"\1\\\2", _MD_LINE_START.sub(r"\1\\\2", escaped))


def slug(title: str) -> str:
    """A file-name-safe form of a title."""
    return _SLUG_RE.sub("-", title.lower()).strip("-")[:60] or "story"


def case_lines(story: dict) -> list[tuple[str, str]]:
    """(label, entries joined by "; ") for each field of the case file that has entries."""
    case = story.get("case_file") or {}
    return [(FIELD_LABELS[f], "; ".join(case[f])) for f in FIELDS if case.get(f)]


def to_markdown(story: dict) -> str:
    lines = [f"# {md_escape(story['title'])}", "",
             f"_Co-written with batplots. Passages marked **{MODEL_NAME}** (and set in italics) are the model's; "
             "passages marked **You** are the writer's._", ""]
    if case_lines(story):
        lines += ["## Case file", ""] + [f"- **{label}:** {md_escape(text)}" for label, text in case_lines(story)]
        lines += ["", "## The story", ""]
    for turn in story["turns"]:
        label = author_label(turn)
        italic = credited_to_model(turn)
        for i, para in enumerate(paragraphs(turn["text"])):
            body = " ".join(md_escape(line.strip()) for line in para.splitlines() if line.strip())
            if italic:
                body = f"*{body}*"
            lines += [f"**{label}:** {body}" if i == 0 else body, ""]
    return "\n".join(lines)


def txt_passage(text: str) -> str:
    """A passage for the .txt export: no control characters (NUL, terminal escapes),
    later lines indented (TXT_INDENT) so none can pass for an author label."""
    lines = strip_controls(text).splitlines() or [""]  # every line break, U+2028 too
    return "\n".join([lines[0]] + [TXT_INDENT + line if line.strip() else "" for line in lines[1:]])


def to_text(story: dict) -> str:
    title = strip_controls(story["title"])
    lines = [title, "=" * len(title), "",
             f"Co-written with batplots. [You] marks the writer's passages, [{MODEL_NAME}] the model's.", ""]
    if case_lines(story):
        lines += ["Case file:"] + [f"{TXT_INDENT}{label}: {strip_controls(text)}" for label, text in case_lines(story)]
        lines += [""]
    for turn in story["turns"]:
        lines += [f"[{author_label(turn)}] {txt_passage(turn['text'])}", ""]
    return "\n".join(lines)


MASTHEAD = """<header class="masthead">
  <p class="logo" aria-hidden="true"><span>BAT</span>PLOTS!</p>
  <p class="tagline">A new episode of the 1966 series, co-written with a tiny language model</p>
</header>
"""


def page(title: str, main_class: str, main: str, masthead: bool = True) -> str:
    """A server-rendered page (share, login, not found) in the app's look: title is
    already escaped, main is the inner HTML of <main>."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Batplots</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css">
</head>
<body class="share">
{MASTHEAD if masthead else ""}<main class="{main_class}">
{main}
</main>
</body>
</html>
"""


def share_page(story: dict) -> str:
    """The read-only page behind a share link (no script at all)."""
    esc = html.escape
    passages = []
    for turn in story["turns"]:
        who = author_label(turn)
        paras = "".join(f"<p>{esc(p)}</p>" for p in paragraphs(turn["text"]))
        kind = "model" if credited_to_model(turn) else "user"
        passages.append(f'<div class="turn {kind}"><span class="visually-hidden">{esc(who)}: </span>{paras}</div>')
    body = "".join(passages) if passages else '<p><em>This story has no passages yet.</em></p>'
    return page(esc(story["title"]), "panel share-panel", f"""  <h1 class="story-title">{esc(story['title'])}</h1>
  <p class="legend">A paragraph after a bat-mark <span class="bat-mark" aria-hidden="true"></span> is the
  model's; the others are the writer's.</p>
  <article class="story plain" aria-label="The story">{body}</article>
  <p class="share-foot"><a href="/">Write your own episode</a></p>""")


def not_found_page(message: str) -> str:
    return page("Not found", "panel share-panel", f"""<h1 class="story-title">Holy missing pages!</h1>
<p>{html.escape(message)}</p><p><a href="/">Back to Batplots</a></p>""", masthead=False)
