"""Pure text handling: sentence splitting, whitespace and joining.

Nothing here touches a model or a file, so every rule is cheap to test. The
splitter is written for the prose of the show's plot summaries: dialogue in
double quotes ("Holy haberdashery, Batman!" cries Robin.), parenthesised
asides, titles such as Mr. and Commissioner, and the odd initial or decimal.
"""

from __future__ import annotations

import re
import unicodedata

TERMINALS = ".!?…"
# Closing marks that belong to the sentence they follow: `...Batman!"` ends after the quote.
CLOSING_QUOTES = "\"'”’»"
CLOSING_BRACKETS = ")]}"
OPENING_BRACKETS = "([{"

# Abbreviations after which a full stop does not end a sentence, because a name or a
# number always follows them in running prose. Compared lower-case, without the dot.
ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "messrs", "dr", "st", "lt", "sgt", "capt", "col", "gen", "maj",
        "cmdr", "adm", "gov", "sen", "rep", "pres", "prof", "rev", "hon", "insp", "supt",
        "det", "ft", "mt", "no", "nos", "vol", "vs", "v", "approx", "dept", "est", "fig",
        "e.g", "i.e", "cf", "ca", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec",
    }
)

_WS_RE = re.compile(r"\s+")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return _WS_RE.sub(" ", text).strip()


def _word_before(text: str, dot: int) -> str:
    """The token (letters, digits and inner dots) that ends just before text[dot]."""
    start = dot
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    return text[start:dot]


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the full stop at text[dot] closes an abbreviation or an initial."""
    word = _word_before(text, dot)
    if not word:
        return False
    if word.lower() in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: "J. Edgar", "Neil A. Hamilton"
    # Dotted acronyms such as U.S. or a.m.: single letters joined by dots.
    parts = word.split(".")
    return len(parts) > 1 and all(len(p) == 1 and p.isalpha() for p in parts)


def _starts_sentence(ch: str) -> bool:
    """Whether a sentence may begin with this character."""
    return ch.isupper() or ch.isdigit() or ch in "\"“‘'([" or (
        ch.isalpha() and not ch.islower()  # scripts without case
    )


def sentence_spans(text: str, final: bool = True) -> tuple[list[tuple[int, int]], int]:
    """Find the complete sentences in text.

    Returns (spans, rest): spans are (start, end) offsets of each complete sentence,
    without surrounding whitespace; rest is the offset where the unfinished tail
    begins (len(text) when nothing is left over). With final=False the text is still
    growing (a model is writing it), so a stop at the very end is not yet a boundary:
    the next characters could turn "Mr." into a title or "3." into "3.5".
    """
    spans: list[tuple[int, int]] = []
    n = len(text)
    start = 0
    while start < n and text[start].isspace():
        start += 1
    depth = 0  # open (, [ and {
    in_quote = False  # inside "straight" or “curly” double quotes
    i = start
    while i < n:
        ch = text[i]
        if ch in OPENING_BRACKETS:
            depth += 1
        elif ch in CLOSING_BRACKETS:
            depth = max(0, depth - 1)
        elif ch == "“":
            in_quote = True
        elif ch == "”":
            in_quote = False
        elif ch == '"':
            in_quote = not in_quote
        elif ch in TERMINALS:
            j = i
            while j < n and (text[j] in TERMINALS):
                j += 1
            # Swallow closing quotes and brackets that end the sentence with its stop.
            q, d = in_quote, depth
            while j < n and (text[j] in CLOSING_QUOTES or text[j] in CLOSING_BRACKETS):
                c = text[j]
                if c == '"' or c == "”":
                    if not q:
                        break  # an opening quote: belongs to the next sentence
                    q = False
                elif c in CLOSING_BRACKETS:
                    if d == 0:
                        break
                    d -= 1
                j += 1
            boundary = False
            if q or d > 0:
                boundary = False  # a stop inside dialogue or an aside does not end the sentence
            elif j == n:
                boundary = final
            elif text[j].isspace():
                k = j
                while k < n and text[k].isspace():
                    k += 1
                if k == n:
                    boundary = final
                elif _starts_sentence(text[k]):
                    boundary = True
            if boundary and text[i:j].rstrip(CLOSING_QUOTES + CLOSING_BRACKETS) == "." and _is_abbreviation(text, i):
                boundary = False
            in_quote, depth = q, d
            if boundary:
                spans.append((start, j))
                while j < n and text[j].isspace():
                    j += 1
                start = j
            i = j
            continue
        i += 1
    return spans, start if start < n else n


def split_sentences(text: str) -> list[str]:
    """Split finished text into sentences; an unfinished tail is the last item."""
    spans, rest = sentence_spans(text, final=True)
    out = [text[a:b] for a, b in spans]
    tail = text[rest:].strip()
    if tail:
        out.append(tail)
    return out


def complete_sentences(text: str, final: bool = True) -> list[str]:
    """Only the complete sentences of text (see sentence_spans for `final`)."""
    spans, _ = sentence_spans(text, final=final)
    return [text[a:b] for a, b in spans]


def ends_sentence(text: str) -> bool:
    """True when finished text ends on a complete sentence."""
    stripped = text.rstrip()
    if not stripped:
        return False
    _, rest = sentence_spans(stripped, final=True)
    return rest >= len(stripped)


def join_continuation(story: str, continuation: str) -> str:
    """The text to append after story so that the continuation reads on with one space.

    The user's story is never changed: only the continuation gets a leading space,
    and none when the story is empty or already ends in whitespace.
    """
    body = continuation.lstrip()
    if not story or story[-1].isspace() or not body:
        return body
    return " " + body


def clean_model_text(text: str) -> str:
    """Tidy a model's raw text for a story: NFC, no control characters, one space runs."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(c if c.isprintable() or c.isspace() else " " for c in text)
    return _WS_RE.sub(" ", text)


def sentence_start(text: str) -> str:
    """A model's new sentence made able to start one: leading marks that cannot open a
    sentence (markdown bullets and emphasis, dashes, stray punctuation) dropped and a
    lowercase first letter capitalised. Otherwise, joined after the sentence before it,
    "…them. *Echoes from the past…" would split as one sentence, not two."""
    i = 0
    while i < len(text) and not (_starts_sentence(text[i]) or text[i].isalpha()):
        i += 1
    text = text[i:]
    return text[:1].upper() + text[1:] if text[:1].islower() else text


# Characters that draw nothing on their own. Zero-width and format characters
# (category Cf), unassigned/private/surrogate code points and lone combining marks
# are tested by category; these few are letters or symbols that render blank.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cn", "Co", "Cs", "Mn", "Me"})
# Control characters a passage may keep: they are how text is laid out.
ALLOWED_CONTROLS = "\t\n\r"


def has_visible_text(text: str) -> bool:
    """True when text has at least one character that draws something."""
    return any(c not in _BLANK_GLYPHS and unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in text)


def is_control(ch: str) -> bool:
    """C0 and C1 control characters and DEL (terminal escapes, NUL...), except tab and newlines."""
    return unicodedata.category(ch) == "Cc" and ch not in ALLOWED_CONTROLS


def first_control(text: str) -> int | None:
    """The index of the first control character (see is_control), or None."""
    return next((i for i, c in enumerate(text) if is_control(c)), None)


def strip_controls(text: str) -> str:
    """text without control characters (see is_control)."""
    return "".join(c for c in text if not is_control(c))


def first_surrogate(text: str) -> int | None:
    """The index of the first unpaired surrogate (text that cannot be UTF-8), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
