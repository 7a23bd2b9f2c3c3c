"""Running the Writer off the event loop, and server-sent events.

A generation runs a Writer's take (`Writer.stream`) in its own worker thread (the
engine's lock queues concurrent ones) and hands its events to the event loop through an
asyncio queue. Whoever consumes the events sets the cancel event when it stops
early (a client that went away), which stops the model between two tokens;
nothing is saved by this module: callers commit a finished Continuation.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import AsyncIterator

from batplots.engine.base import Cancelled, Continuation, Rewind, Settings
from batplots.writer import Writer

# Generations waiting for or holding the model at once; past this, 503 "busy".
# 16 concurrent writers must all be answered (the llama engine batches 16 at once;
# the others queue), with room for alternatives and retries on top.
MAX_PENDING_GENERATIONS = 32
# How often a non-streaming request looks whether its client is still there.
DISCONNECT_POLL_SECONDS = 0.25


class Busy(Exception):
    """Too many generations are queued."""


class ClientGone(Exception):
    """The client disconnected; the generation was cancelled."""


class StoryBusy(Exception):
    """The story is being continued already (another tab, a double click): 409 at once,
    rather than a second full generation that could only end in a stale version."""

    def __init__(self, version: int):
        super().__init__("the model is already writing for this story (in another tab or request); wait for it to "
                         "finish or stop it, then try again")
        self.version = version


class StoryClaims:
    """The stories with a generation running in this process, one each. Used only on
    the event loop, so it needs no lock."""

    def __init__(self):
        self._held: dict[str, Claim] = {}

    def claim(self, story_id: str, version: int) -> "Claim":
        held = self._held.get(story_id)
        if held is not None and not held.stale():
            raise StoryBusy(version)
        claim = Claim(self, story_id)
        self._held[story_id] = claim
        return claim


class Claim:
    """One story's generation slot; release() is idempotent."""

    def __init__(self, claims: StoryClaims, story_id: str):
        self._claims, self.story_id = claims, story_id
        self.generation: Generation | None = None

    def release(self) -> None:
        if self._claims._held.get(self.story_id) is self:
            del self._claims._held[self.story_id]

    def stale(self) -> bool:
        """A streamed response whose body never started leaves nobody to release it."""
        gen = self.generation
        return gen is not None and not gen.consumed and not gen.alive()


class Generation:
    """One continuation being written in a worker thread."""

    _pending = 0
    _pending_lock = threading.Lock()

    def __init__(self, writer: Writer, story: str, settings: Settings, takes: int | None = None,
                 tagged: bool = False, case: dict | None = None, beat: str | None = None):
        with Generation._pending_lock:
            if Generation._pending >= MAX_PENDING_GENERATIONS:
                raise Busy(f"the model is busy with {Generation._pending} other requests (at most "
                           f"{MAX_PENDING_GENERATIONS} wait at once); try again in a moment")
            Generation._pending += 1
        self.cancel = threading.Event()
        self.consumed = False  # someone reads the events (and will save, or cancel)
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._work, args=(writer, story, settings, takes, tagged, case, beat),
                                        name="batplots-generation", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            pass  # the event loop is gone (server shutting down): nobody is listening

    def _work(self, writer, story, settings, takes, tagged, case, beat) -> None:
        try:
            # case: the story's case file (its names count as the story's); beat: the one asked for
            take = writer.stream(story, settings, cancel=self.cancel, takes=takes, tagged=tagged, case=case, beat=beat)
            events = iter(take)
            try:
                for item in events:
                    if self.cancel.is_set():
                        raise Cancelled()
                    # tagged: every take streams, as (take index, event); values become (index, text)
                    index, event = item if tagged else (None, item)
                    if isinstance(event, Rewind):
                        self._put(("rewind", event.text if index is None else (index, event.text)))
                    elif event:
                        self._put(("piece", event if index is None else (index, event)))
                self._put(("done", take.result))
            finally:
                events.close()  # stops every take and releases the engine at once
        except Cancelled:
            self._put(("cancelled", None))
        except Exception as exc:  # a model failure becomes an error event, never a dead server
            self._put(("error", exc))
        finally:
            with Generation._pending_lock:
                Generation._pending -= 1

    async def events(self, request=None) -> AsyncIterator[tuple[str, object]]:
        """Yield (kind, value): ("piece", str), ("rewind", str), then one of ("done",
        Continuation), ("error", Exception), ("cancelled", None). A tagged generation's
        piece and rewind values are (take index, str).

        With request given, polls for a disconnect (for responses that are not
        streaming, where nothing else notices) and raises ClientGone. Leaving early
        by any route cancels the generation.
        """
        self.consumed = True
        getter = None
        checked = time.monotonic()
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_SECONDS if request else None)
                # Pieces may arrive faster than the poll interval: look by the clock.
                if request is not None and time.monotonic() - checked >= DISCONNECT_POLL_SECONDS:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        raise ClientGone()
                if not done:
                    continue
                kind, value = getter.result()
                getter = None
                yield kind, value
                if kind in ("done", "error", "cancelled"):
                    return
        finally:
            if getter is not None:
                getter.cancel()
            self.cancel.set()

    async def result(self, request=None) -> Continuation:
        """Wait for the finished continuation; raises the model's error, or ClientGone."""
        async for kind, value in self.events(request):
            if kind == "done":
                return value
            if kind == "error":
                raise value
            if kind == "cancelled":
                raise ClientGone()
        raise ClientGone()


def sse(event: str, data: dict) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_sse(request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")
