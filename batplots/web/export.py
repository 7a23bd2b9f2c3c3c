"""Stories as Markdown, plain text and the read-only share page.

Pure functions of a story dict. Authorship is marked in every form, and user
text is escaped for each: HTML is entity-escaped in the page and in Markdown
(where a renderer would otherwise run raw HTML), so no script ever runs.
"""

from __future__ import annotations

import html
import re

from batplots.text import strip_controls

AUTHOR_LABELS = {"user": "You", "model": "Batplots"}
# Inline markup only: every passage follows a label, so it never starts a line.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]~])")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
# In the plain-text export a passage's later lines are indented by this, so only a
# real label starts a line with "[": a passage cannot forge another's authorship.
TXT_INDENT = "    "


def md_escape(text: str) -> str:
    """Text that Markdown shows literally: HTML entities for <, > and &, and a
    backslash before each character Markdown would treat as markup (control
    characters, which older databases may hold, are dropped)."""
    escaped = strip_controls(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", escaped)


def slug(title: str) -> str:
    """A file-name-safe form of a title."""
    return _SLUG_RE.sub("-", title.lower()).strip("-")[:60] or "story"


def to_markdown(story: dict) -> str:
    lines = [f"# {md_escape(story['title'])}", "",
             "_Co-written with batplots. Passages marked **Batplots** (and set in italics) are the model's; "
             "passages marked **You** are the writer's._", ""]
    for turn in story["turns"]:
        label = AUTHOR_LABELS[turn["author"]]
        body = " ".join(md_escape(line) for line in turn["text"].splitlines() if line.strip())
        if turn["author"] == "model":
            body = f"*{body}*"
        edited = " (edited)" if turn.get("edited") else ""
        lines += [f"**{label}{edited}:** {body}", ""]
    return "\n".join(lines)


def txt_passage(text: str) -> str:
    """A passage for the .txt export: no control characters (NUL, terminal escapes),
    later lines indented (TXT_INDENT) so none can pass for an author label."""
    lines = strip_controls(text).splitlines() or [""]  # every line break, U+2028 too
    return "\n".join([lines[0]] + [TXT_INDENT + line if line.strip() else "" for line in lines[1:]])


def to_text(story: dict) -> str:
    title = strip_controls(story["title"])
    lines = [title, "=" * len(title), "",
             "Co-written with batplots. [You] marks the writer's passages, [Batplots] the model's.", ""]
    for turn in story["turns"]:
        edited = " (edited)" if turn.get("edited") else ""
        lines += [f"[{AUTHOR_LABELS[turn['author']]}{edited}] {txt_passage(turn['text'])}", ""]
    return "\n".join(lines)


def share_page(story: dict) -> str:
    """The read-only page behind a share link (no script at all)."""
    esc = html.escape
    passages = []
    for turn in story["turns"]:
        who = AUTHOR_LABELS[turn["author"]]
        passages.append(
            f'<span class="passage {turn["author"]}"><span class="visually-hidden">{who}: </span>'
            f'{esc(turn["text"])}</span>')
    body = " ".join(passages) if passages else '<em>This story has no passages yet.</em>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(story['title'])} · Batplots</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css">
</head>
<body class="share">
<header class="masthead">
  <p class="logo" aria-hidden="true"><span>BAT</span>PLOTS!</p>
  <p class="tagline">A new episode of the 1966 series, co-written with a tiny language model</p>
</header>
<main class="panel share-panel">
  <h1 class="story-title">{esc(story['title'])}</h1>
  <p class="legend"><span class="passage user">Upright text</span> is the writer's;
  <span class="passage model">italic text with a bat-mark</span> is the model's.</p>
  <article class="story" aria-label="The story">{body}</article>
  <p class="share-foot"><a href="/">Write your own episode</a></p>
</main>
</body>
</html>
"""


def not_found_page(message: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not found · Batplots</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css"></head>
<body class="share"><main class="panel share-panel"><h1 class="story-title">Holy missing pages!</h1>
<p>{html.escape(message)}</p><p><a href="/">Back to Batplots</a></p></main></body></html>
"""
