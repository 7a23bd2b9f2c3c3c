"""The rules a story obeys, shared by the store (the web app) and `batplots write`:
limits, how passages are cleaned and joined; and the store's errors (batplots.store.stories
re-exports them).

Kept apart from the SQL so that store.py stays one screenful of queries.
"""

from __future__ import annotations

import base64
import binascii
import json

from batplots import text as textlib

# Named limits, quoted by the API's error messages and the README.
MAX_TURN_CHARS = 2000  # characters in one passage
MAX_TITLE_CHARS = 120
MAX_TURNS = 200  # passages in one story


class StoreError(Exception):
    """Base of the store's errors; the message is meant for the user."""


class NotFound(StoreError):
    pass


class Invalid(StoreError):
    """The request breaks a rule (empty text, a limit, nothing to undo...)."""


class Damaged(StoreError):
    """PRAGMA quick_check found damage in the database file."""


class Conflict(StoreError):
    """The caller's version is stale; `version` is the current one."""

    def __init__(self, version: int):
        super().__init__(f"the story changed since you loaded it (your version is stale; the current version is "
                         f"{version}); reload it and try again")
        self.version = version


def check_characters(text: str, what: str) -> None:
    """Refuse text SQLite cannot store as UTF-8 (lone surrogates) and control characters
    (NUL, terminal escapes), which would go raw into exports."""
    bad = textlib.first_surrogate(text)
    if bad is not None:
        raise Invalid(f"{what} contains an unpaired surrogate (U+{ord(text[bad]):04X}) at character {bad + 1}; "
                      "send valid Unicode text")
    bad = textlib.first_control(text)
    if bad is not None:
        raise Invalid(f"{what} contains the control character U+{ord(text[bad]):04X} at character {bad + 1}; "
                      "only tabs and line breaks are allowed")


def clean_text(text: str, what: str = "text") -> str:
    """A passage as stored: stripped; rejects empty, invisible-only, over-long text and
    control characters by name."""
    if not isinstance(text, str):
        raise Invalid(f"{what} must be a string")
    check_characters(text, what)
    stripped = text.strip()
    if not textlib.has_visible_text(stripped):
        raise Invalid(f"{what} is empty (blank, or only invisible characters); write at least one word")
    if len(stripped) > MAX_TURN_CHARS:
        raise Invalid(f"{what} is {len(stripped)} characters long; a passage may have at most {MAX_TURN_CHARS}")
    return stripped


def story_text(turns) -> str:
    """The story as one text: the passages (dicts or objects with .text) joined the way
    continuations join on. The web app and `batplots write` both build the model's
    prompt with this."""
    out = ""
    for turn in turns:
        out += textlib.join_continuation(out, turn["text"] if isinstance(turn, dict) else turn.text)
    return out


def clean_title(title: str) -> str:
    """A title as stored: one line, whitespace collapsed, 1..MAX_TITLE_CHARS characters."""
    if not isinstance(title, str):
        raise Invalid("title must be a string")
    check_characters(title, "title")
    title = textlib.normalize_whitespace(title)
    if not textlib.has_visible_text(title):
        raise Invalid("title is empty (blank, or only invisible characters); give the story a name or leave "
                      "the title out")
    if len(title) > MAX_TITLE_CHARS:
        raise Invalid(f"title is {len(title)} characters long; at most {MAX_TITLE_CHARS} are allowed")
    return title


def encode_cursor(row) -> str:
    """An opaque page cursor: the sort key of the last story on a page."""
    key = json.dumps([row["updated_at"], row["created_at"], row["id"]])
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
        raise Invalid("cursor is not one this server gave out; use the Link header of the previous page, "
                      "or leave cursor out for the first page")
    return key
