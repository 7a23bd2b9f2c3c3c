"""The model side of the web app: the server's own on `app.state.model`.

It holds one Writer (batplots.story.writer.open_writer: engine, copy guard, lore and
conditioning, as `generate`, `write` and `eval` get it), loads it once in a background
thread so that the page and the story API answer at once, and holds the one Bridge
through which every generation and /v1 completion waits for the model. A second named
base (batplots.web.bases) is another ModelSide, loaded lazily, passing the same Bridge.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from batplots.model.bases import Base
from batplots.story.lore import Lore
from batplots.web.generation import MAX_PENDING_GENERATIONS, Bridge
from batplots.story.writer import Writer


class ModelUnavailable(Exception):
    """The model is loading, failed to load, is busy, or wrote nothing: 503."""


class ModelSide:
    """The Writer (given, or loaded by `load` in the background by start()), its load
    state for /healthz and 503s, and the bridge to it.

    base: the named base it runs (None: a .gguf, a directory, a remote server); bridge:
    another side's, to share its limit. A side nobody start()ed loads when require() first
    asks for it (the second base: batplots.web.bases)."""

    def __init__(self, writer: Writer | None = None, load: Callable[[], Writer] | None = None,
                 max_pending: int = MAX_PENDING_GENERATIONS, *, base: Base | None = None,
                 bridge: Bridge | None = None):
        if writer is None and load is None:
            raise ValueError("give the web app a Writer, or a function that loads one")
        self.writer = writer
        self._load = load
        self.base = base
        self.error: str | None = None
        self.loading_since = time.monotonic()
        self.ready_seconds: float | None = 0.0 if writer is not None else None
        self.bridge = bridge if bridge is not None else Bridge(max_pending)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()  # require() runs in many threads: one load

    @property
    def role(self) -> str | None:
        return self.base.role if self.base is not None else None

    @property
    def what(self) -> str:
        """The model in messages: "the model", or "the best model (Qwen2.5-Coder-1.5B)"."""
        return f"the {self.base.role} model ({self.base.label})" if self.base is not None else "the model"

    def started(self) -> bool:
        return self.writer is not None or self._thread is not None

    def start(self) -> None:
        """Load the Writer in a background thread, once (a no-op when it was given)."""
        with self._start_lock:
            if self.started():
                return
            self.loading_since = time.monotonic()
            self._thread = threading.Thread(target=self._work, name="batplots-load-model", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        try:
            self.writer = self._load()
        except Exception as exc:  # reported by /healthz and every 503; the server stays up
            self.error = str(exc) or exc.__class__.__name__
        finally:
            self.ready_seconds = round(time.monotonic() - self.loading_since, 2)

    def require(self) -> Writer:
        """The loaded Writer, or ModelUnavailable saying what is going on."""
        if self.writer is not None:
            return self.writer
        if self.error:
            raise ModelUnavailable(f"{self.what} failed to load: {self.error}")
        if not self.started():  # a lazy side: the first story that asks for it loads it
            self.start()
            raise ModelUnavailable(f"{self.what} is loading now (it loads the first time a story asks for it); try "
                                   "again in a few seconds (GET /healthz says when it is ready)")
        raise ModelUnavailable(f"{self.what} is still loading; try again in a few seconds (GET /healthz says when "
                               "it is ready)")

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

    def entry(self) -> dict:
        """This side in /healthz's "models": role, name, label and status ("not loaded": a
        lazy side no story has asked for yet), with what health() says once it is loaded."""
        writer = self.writer
        name = self.base.name if self.base is not None else None
        if name is None and writer is not None:
            info = writer.engine.describe()
            name = str(info.get("adapter") or info.get("model") or info.get("base") or info.get("engine"))
        status = ("ready" if writer is not None else "error" if self.error else
                  "loading" if self.started() else "not loaded")
        out = {"role": self.role, "name": name, "label": self.base.label if self.base is not None else name,
               "status": status}
        if status in ("ready", "loading", "error"):
            out.update({k: v for k, v in self.health().items() if k != "status"})
        return out
