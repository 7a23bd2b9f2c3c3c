"""Where batplots keeps its files, and how it writes them.

One home for the user directory ($BATPLOTS_HOME) and for atomic writes, which every
module that saves something (the corpus, adapters, reports, caches) shares.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def home() -> Path:
    """The user directory for caches and data: $BATPLOTS_HOME or ~/.cache/batplots."""
    return Path(os.environ.get("BATPLOTS_HOME") or Path.home() / ".cache" / "batplots")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (model files are over a GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def default_file_mode() -> int:
    """The mode a plain open() would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to path via a temporary file in the same directory and os.replace,
    so a crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private (0600); a report is not
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
