"""The model side of the web app: one object on `app.state.model`.

It holds the one Writer (batplots.story.writer.open_writer: engine, copy guard, lore and
conditioning, as `generate`, `write` and `eval` get it), loads it once in a background
thread so that the page and the story API answer at once, and holds the one Bridge
through which every generation and /v1 completion waits for the model.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from batplots.story.lore import Lore
from batplots.web.generation import MAX_PENDING_GENERATIONS, Bridge
from batplots.story.writer import Writer


class ModelUnavailable(Exception):
    """The model is loading, failed to load, is busy, or wrote nothing: 503."""


class ModelSide:
    """The Writer (given, or loaded by `load` in the background by start()), its load
    state for /healthz and 503s, and the bridge to it."""

    def __init__(self, writer: Writer | None = None, load: Callable[[], Writer] | None = None,
                 max_pending: int = MAX_PENDING_GENERATIONS):
        if writer is None and load is None:
            raise ValueError("give the web app a Writer, or a function that loads one")
        self.writer = writer
        self._load = load
        self.error: str | None = None
        self.loading_since = time.monotonic()
        self.ready_seconds: float | None = 0.0 if writer is not None else None
        self.bridge = Bridge(max_pending)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load the Writer in a background thread, once (a no-op when it was given)."""
        if self.writer is not None or self._thread is not None:
            return
        self.loading_since = time.monotonic()

        def work():
            try:
                self.writer = self._load()
            except Exception as exc:  # reported by /healthz and every 503; the server stays up
                self.error = str(exc) or exc.__class__.__name__
            finally:
                self.ready_seconds = round(time.monotonic() - self.loading_since, 2)

        self._thread = threading.Thread(target=work, name="batplots-load-model", daemon=True)
        self._thread.start()

    def require(self) -> Writer:
        """The loaded Writer, or ModelUnavailable saying what is going on."""
        if self.writer is not None:
            return self.writer
        if self.error:
            raise ModelUnavailable(f"the model failed to load: {self.error}")
        raise ModelUnavailable("the model is still loading; try again in a few seconds (GET /healthz says when it "
                               "is ready)")

    @property
    def lore(self) -> Lore | None:
        """The show's names for case files (None until the Writer is loaded)."""
        return self.writer.lore if self.writer is not None else None

    def health(self) -> dict:
        """What /healthz says: ready (with the model and its copy guard), loading, or error."""
        writer = self.writer
        if writer is not None:
            guard = writer.guard
            return {"status": "ready", "model": writer.engine.describe(), "load_seconds": self.ready_seconds,
                    "copy_guard": guard.describe() if guard is not None else None,
                    # Set when the engine is a fallback (llama.cpp crashed in the self-check here).
                    "notice": writer.engine.notice}
        if self.error:
            return {"status": "error", "error": self.error}
        return {"status": "loading", "seconds": round(time.monotonic() - self.loading_since, 1)}
