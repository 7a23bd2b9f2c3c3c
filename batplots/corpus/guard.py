"""The copy guard: no sentence the model writes may copy its training corpus.

The guard is a setting, not a wrapper: `Settings.copy_limit` (default 8, 0 = off)
says how many consecutive corpus words make a sentence a copy. The Writer
(batplots.story.writer) holds a CopyGuard (the corpus index) and vets each finished
sentence with `guard.sentence_check(copy_limit)`: a copy is taken back and
resampled, up to batplots.story.passage.MAX_SENTENCE_RETRIES times, after which the
least-copying candidate is kept and flagged in `Continuation.flags`. Every continuation also gets
`Continuation.provenance`: for each sentence its closest corpus passage.

The corpus is the one the adapter was trained on, named with its sha256 in the
adapter's training.json; the index is rebuilt from it at load time (~0.1 s).
When it cannot be found the guard is off and `CopyGuard.note` says why, for
the CLI and the web app to show: generation never fails for want of a corpus.
$BATPLOTS_CORPUS names the corpus file wherever it lies (an installed wheel,
another machine), before the path that training.json records.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from typing import Callable

from batplots.corpus.index import CorpusIndex, load_index

TRAINING_INFO = "training.json"
# Relative corpus paths in training.json are tried against these, in order.
REPO_ROOT = Path(__file__).resolve().parents[2]
# The guard's corpus file, when it is not where training.json says (see guard_for_adapter).
CORPUS_ENV = "BATPLOTS_CORPUS"


def sentence_check(index: CorpusIndex, copy_limit: int) -> Callable[[str], dict | None]:
    """A sentence check (batplots.story.passage): None accepts a sentence; a dict rejects one that
    shares copy_limit or more consecutive words with the corpus (score = that many)."""

    def check(sentence: str) -> dict | None:
        match, spans = index.longest_in_text(sentence)
        if match.length < copy_limit:
            return None
        first, last = spans[match.start], spans[match.start + match.length - 1]
        episode = index.episode_at(match.corpus_pos)
        return {"score": match.length, "span": sentence[first[1]:last[2]],
                "episode": index.titles[episode], "url": index.urls[episode]}

    return check


def flag_text(flag: dict) -> str:
    """One line naming a sentence the guard let through (a Continuation.flags entry)."""
    return (f"(copy guard: sentence {flag['sentence'] + 1} still shares {flag['score']} words with "
            f"{flag['episode']!r} after {flag['attempts']} tries: {flag['span']!r})")


def provenance(index: CorpusIndex, sentences: list[str], flags: list[dict] = ()) -> list[dict]:
    """For each sentence (its text included, so a page can mark it): its longest span
    shared with the corpus and where that is.

    `flagged` marks a sentence the guard let through although it copies (the flags of
    Continuation.flags); span, passage, episode and url are None when the sentence
    shares fewer than index.MIN_PASSAGE_WORDS consecutive words with the corpus."""
    flagged = {f.get("sentence") for f in flags}
    out = []
    for i, sentence in enumerate(sentences):
        passage = index.closest(sentence)
        entry = {"sentence": i, "text": sentence, "words": 0, "span": None, "passage": None, "episode": None,
                 "url": None}
        if passage is not None:
            entry.update(passage.to_dict())
        entry["flagged"] = i in flagged
        out.append(entry)
    return out


@dataclass
class CopyGuard:
    """The corpus an engine's output is checked against (index None: guard off)."""

    index: CorpusIndex | None
    corpus: str | None = None  # the corpus file, as found
    note: str | None = None  # why the guard is off, or a warning about the corpus

    @property
    def active(self) -> bool:
        return self.index is not None

    def sentence_check(self, copy_limit: int) -> Callable[[str], dict | None] | None:
        if self.index is None or copy_limit <= 0:
            return None
        return sentence_check(self.index, copy_limit)

    def provenance(self, sentences: list[str], flags: list[dict] = ()) -> list[dict]:
        return provenance(self.index, sentences, flags) if self.index is not None else []

    def describe(self) -> dict:
        """Status for --json, /healthz and the web settings panel."""
        out = {"active": self.active, "corpus": self.corpus, "note": self.note}
        if self.index is not None:
            out.update(sha256=self.index.sha256, words=self.index.n_words, episodes=len(self.index.titles))
        return out


def read_training_info(adapter_dir: Path) -> dict | None:
    """The adapter's training.json, or None when it has none (or it is unreadable)."""
    path = Path(adapter_dir) / TRAINING_INFO
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def corpus_of(info: dict) -> tuple[str | None, str | None]:
    """(path, sha256) of the training corpus that training.json names.

    Accepts {"corpus": {"path": ..., "sha256": ...}} and {"corpus": PATH, "corpus_sha256": SHA}."""
    corpus = info.get("corpus")
    if isinstance(corpus, dict):
        path, sha = corpus.get("path"), corpus.get("sha256")
    else:
        path, sha = corpus, info.get("corpus_sha256") or info.get("sha256")
    return (path if isinstance(path, str) and path else None), (sha if isinstance(sha, str) and sha else None)


def candidate_paths(path: str, adapter_dir: Path) -> list[Path]:
    """Where a corpus path from training.json may be: as written (absolute, or
    relative to the working directory), beside the adapter, or from the repository."""
    raw = Path(path).expanduser()
    if raw.is_absolute():
        return [raw]
    return [raw, Path(adapter_dir) / raw, REPO_ROOT / raw]


def guard_for_corpus(path: str | Path, expected_sha256: str | None = None) -> CopyGuard:
    """A guard over one corpus file; off with a note when it cannot be read."""
    from batplots.corpus.episodes import CorpusError

    try:
        index = load_index(path)
    except (CorpusError, OSError) as exc:
        return CopyGuard(None, str(path), f"copy guard off: the corpus could not be read ({exc})")
    note = None
    if expected_sha256 and index.sha256 != expected_sha256:
        note = (f"the corpus at {path} differs from the one the adapter was trained on "
                f"(sha256 {index.sha256[:12]}…, expected {expected_sha256[:12]}…); checking against it anyway")
    return CopyGuard(index, str(path), note)


def guard_for_adapter(adapter_dir: Path | None) -> CopyGuard:
    """The guard for an engine with this adapter (None: the bare base model)."""
    if adapter_dir is None:
        return CopyGuard(None, None, "copy guard off: the bare base model has no training corpus to check against")
    info = read_training_info(adapter_dir)
    override = os.environ.get(CORPUS_ENV, "").strip()
    if override:
        # The user named the file: use it (warning if it is not the training corpus), or
        # say why not; never fall back silently to another copy.
        path = Path(override).expanduser()
        if not path.is_file():
            return CopyGuard(None, override, f"copy guard off: ${CORPUS_ENV} names {override}, which is not a file")
        return guard_for_corpus(path, corpus_of(info)[1] if info else None)
    if info is None:
        return CopyGuard(None, None, f"copy guard off: {Path(adapter_dir) / TRAINING_INFO} is missing or unreadable, "
                                     "so the training corpus is unknown")
    path, sha = corpus_of(info)
    if path is None:
        return CopyGuard(None, None, f"copy guard off: {Path(adapter_dir) / TRAINING_INFO} names no corpus")
    found = [p for p in candidate_paths(path, adapter_dir) if p.is_file()]
    if not found:
        return CopyGuard(None, path, f"copy guard off: the training corpus {path} is not on this machine "
                                     f"(scrape it with `batplots scrape` and set ${CORPUS_ENV} to the file, "
                                     "or put it back at that path)")
    if sha:  # prefer the copy that is byte-for-byte the training corpus
        from batplots.corpus.episodes import corpus_sha256

        found.sort(key=lambda p: corpus_sha256(p) != sha)
    return guard_for_corpus(found[0], sha)
