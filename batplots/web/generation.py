"""The one bridge from the model's worker threads to the event loop, and server-sent events.

Every request that runs the model (continue, retry, alternatives, /v1 completions) is a
Job: its work runs in a worker thread of its own (the engine's lock queues concurrent
ones) and hands its events to the event loop through an asyncio queue. All Jobs pass
one Bridge, which holds the one limit on how many may wait for the model at once, and
counts them per owner so that a fair share per user can be enforced in one place.
Whoever consumes the events sets the cancel event when it stops early (a client that
went away), which stops the model between two tokens; nothing is saved by this module:
callers commit what a Job returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from typing import AsyncIterator, Callable, Hashable

from batplots.model.engine.base import Cancelled, Continuation, Engine, Rewind, Settings
from batplots.story.writer import Writer

# Jobs waiting for or holding the model at once, all kinds together; past this, 503
# "busy". 16 concurrent writers must all be answered (the llama engine batches 16 at
# once; the others queue), with room for alternatives, retries and /v1 on top.
MAX_PENDING_GENERATIONS = 32
# One owner's share of those places: a user (or, without accounts, one client address)
# with this many generations waiting gets 503 "let one finish" for the next, so the
# other places stay free for everyone else. Half the places: one writer can still run
# 16 tabs at once, and at least two owners always fit.
MAX_PENDING_PER_OWNER = MAX_PENDING_GENERATIONS // 2
# The client address of the request being served, set by batplots.web.security.Guard
# (accounts.address_key: an IPv6 client counts as its /64). Jobs of the anonymous owner
# (None: every request on a server without accounts) are counted per address instead.
CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("batplots_client_address",
                                                                             default=None)
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
        self.generation: Job | None = None

    def release(self) -> None:
        if self._claims._held.get(self.story_id) is self:
            del self._claims._held[self.story_id]

    def stale(self) -> bool:
        """A streamed response whose body never started leaves nobody to release it."""
        gen = self.generation
        return gen is not None and not gen.consumed and not gen.alive()


Emit = Callable[[str, object], None]
# work(emit, cancel) runs in the Job's thread: emit(kind, value) sends an event to the
# loop; the value it returns ends the Job as ("done", value).
Work = Callable[[Emit, threading.Event], object]


class Bridge:
    """The one door to the model for the web app: admits a Job while fewer than `limit`
    wait (else Busy), and counts them per owner. per_owner, when set, caps one owner's
    share, so that one user's open streams cannot take every place."""

    def __init__(self, limit: int = MAX_PENDING_GENERATIONS, per_owner: int | None = MAX_PENDING_PER_OWNER):
        self.limit, self.per_owner = limit, per_owner
        self._lock = threading.Lock()
        self._owners: dict[Hashable, int] = {}

    def pending(self) -> int:
        """Jobs admitted and not finished, every owner's."""
        with self._lock:
            return sum(self._owners.values())

    def pending_of(self, owner: Hashable) -> int:
        with self._lock:
            return self._owners.get(self.key(owner), 0)

    @staticmethod
    def key(owner: Hashable) -> Hashable:
        """Whose share a job counts against: the owner, or for the anonymous owner (None)
        the client address of the request starting it (CLIENT_ADDRESS)."""
        return owner if owner is not None else ("address", CLIENT_ADDRESS.get())

    def _admit(self, owner: Hashable) -> None:
        with self._lock:
            total = sum(self._owners.values())
            if total >= self.limit:
                raise Busy(f"the model is busy with {total} other requests (at most {self.limit} wait at once); "
                           "try again in a moment")
            mine = self._owners.get(owner, 0)
            if self.per_owner is not None and mine >= self.per_owner:
                raise Busy(f"you have {mine} requests waiting for the model already (at most {self.per_owner} "
                           "each, so that others get their turn); let one finish or stop it, then try again")
            self._owners[owner] = mine + 1

    def _release(self, owner: Hashable) -> None:
        with self._lock:
            left = self._owners.get(owner, 0) - 1
            if left > 0:
                self._owners[owner] = left
            else:
                self._owners.pop(owner, None)

    def start(self, owner: Hashable, work: Work, name: str = "batplots-job") -> "Job":
        """Run work in a thread of its own once admitted (Busy when the model is full,
        or when this owner has its share waiting already)."""
        key = self.key(owner)
        self._admit(key)
        try:
            return Job(self, key, work, name)
        except BaseException:
            self._release(key)
            raise


class Job:
    """One piece of model work in a worker thread, its events queued for the event loop."""

    def __init__(self, bridge: Bridge, owner: Hashable, work: Work, name: str):
        self.cancel = threading.Event()
        self.consumed = False  # someone reads the events (and will save, or cancel)
        self._bridge, self._owner = bridge, owner
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _put(self, kind: str, value: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:
            pass  # the event loop is gone (server shutting down): nobody is listening

    def _run(self, work: Work) -> None:
        try:
            result = work(self._put, self.cancel)
            self._put("done", result)
        except Cancelled:
            self._put("cancelled", None)
        except Exception as exc:  # a model failure becomes an error event, never a dead server
            self._put("error", exc)
        finally:
            self._bridge._release(self._owner)

    async def events(self, request=None) -> AsyncIterator[tuple[str, object]]:
        """Yield (kind, value): what the work emitted, then one of ("done", result),
        ("error", Exception), ("cancelled", None).

        With request given, polls for a disconnect (for responses that are not
        streaming, where nothing else notices) and raises ClientGone. Leaving early
        by any route cancels the work.
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

    async def result(self, request=None):
        """Wait for the work's result; raises its error, or ClientGone."""
        async for kind, value in self.events(request):
            if kind == "done":
                return value
            if kind == "error":
                raise value
            if kind == "cancelled":
                raise ClientGone()
        raise ClientGone()


def write_passage(bridge: Bridge, owner: Hashable, writer: Writer, story: str, settings: Settings,
                  takes: int | None = None, tagged: bool = False, case: dict | None = None,
                  beat: str | None = None, whole: bool = False, writer_text: str | None = None) -> Job:
    """A Writer's take as a Job: ("piece", str) and ("rewind", str) events (tagged: their
    values are (take index, str)), then ("done", Continuation). case, beat, whole and
    writer_text: as Writer.stream's."""

    def work(emit: Emit, cancel: threading.Event) -> Continuation:
        take = writer.stream(story, settings, cancel=cancel, takes=takes, tagged=tagged, case=case, beat=beat,
                             whole=whole, writer_text=writer_text)
        events = iter(take)
        try:
            for item in events:
                if cancel.is_set():
                    raise Cancelled()
                index, event = item if tagged else (None, item)
                if isinstance(event, Rewind):
                    emit("rewind", event.text if index is None else (index, event.text))
                elif event:
                    emit("piece", event if index is None else (index, event))
        finally:
            events.close()  # stops every take and releases the engine at once
        return take.result

    return bridge.start(owner, work, "batplots-generation")


def raw_pieces(bridge: Bridge, owner: Hashable, engine: Engine, prompt: str, settings: Settings) -> Job:
    """engine.pieces under the engine's lock as a Job (/v1 completions): ("piece", str)
    events, then ("done", None)."""

    def work(emit: Emit, cancel: threading.Event) -> None:
        with engine.lock:
            gen = engine.pieces(prompt, settings, settings.seed, cancel)
            try:
                for piece in gen:
                    if cancel.is_set():
                        raise Cancelled()
                    emit("piece", piece)
            finally:
                gen.close()

    return bridge.start(owner, work, "batplots-v1-completion")


def sse(event: str, data: dict) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_sse(request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")
