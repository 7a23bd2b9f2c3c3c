"""The JSON API under /api: stories, turns, generation, undo/redo, export."""

from __future__ import annotations

import dataclasses
from typing import Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

from batplots.story import beats as beatlib
from batplots.store import stories as storelib
from batplots.story.rules import clean_text
from batplots.model.engine.base import MAX_SEED, MIN_SEED, Continuation, EngineError, Settings, SettingsError
from batplots.story.writer import Writer
from batplots.story import export
from batplots.web.bases import engine_settings
from batplots.web.generation import SSE_HEADERS, Busy, Claim, ClientGone, Job, sse, wants_sse, write_passage
from batplots.web.modelside import ModelUnavailable
from batplots.web.alternatives import Refills, alternatives_body, alternatives_stream, picked_provenance
from batplots.web.errors import error_body
from batplots.web.schemas import (
    MAX_ALTERNATIVES,
    MIN_ALTERNATIVES,
    AlternativesRequest,
    CaseUpdate,
    ContinueRequest,
    EditTurn,
    NewStory,
    NewTurn,
    StoryPatch,
    Versioned,
    default_story_settings,
)
from batplots.web.security import owner_of

router = APIRouter(prefix="/api", tags=["stories"])

# SQLite integers are 64-bit: a larger id can name no row (and would overflow).
MAX_SQL_INT = 2**63 - 1


def store_of(request: Request, story_id: str | None = None) -> storelib.Store:
    """The store as the signed-in user sees it (only their stories); on a server
    without accounts, the local writer's; with the lore (the corpus's names fill in
    case files) of the model story_id uses."""
    store = request.app.state.store.for_owner(owner_of(request))
    store.lore = request.app.state.models.story_lore(store, story_id)
    return store


def base_settings(request: Request) -> Settings:
    return request.app.state.config.settings


def story_settings(request: Request, current: dict, changes: dict) -> dict:
    """A story's settings after changes, validated against the engine's limits and the
    bases this server offers (batplots.web.bases)."""
    base = base_settings(request)
    merged = {**default_story_settings(base), **current, **changes}
    dataclasses.replace(base, **engine_settings(merged)).validate()
    request.app.state.models.check_choice(changes)
    return merged


def generation_settings(request: Request, story: dict, overrides: dict, fresh_seed: bool) -> Settings:
    """Server defaults < story settings < this request's overrides. fresh_seed: ignore
    the server's --seed (Retry and Alternatives must differ from what they replace)."""
    base = base_settings(request)
    seed = overrides.get("seed", None if fresh_seed else base.seed)
    merged = {**engine_settings(story["settings"]), **{k: v for k, v in overrides.items() if k != "seed"}, "seed": seed}
    return dataclasses.replace(base, **merged).validate()


def turn_fields(cont: Continuation, writer: Writer) -> dict:
    """What a model turn stores besides its text: settings, seed and meta (room for
    later provenance notes; the copy guard's flags are kept already)."""
    return {
        "settings": cont.settings.to_dict(),
        "seed": cont.settings.seed,
        "meta": {
            "flags": cont.flags,
            "provenance": cont.provenance,
            "tokens": cont.tokens,
            "prompt_tokens": cont.prompt_tokens,
            "seconds": round(cont.seconds, 3),
            "first_piece_seconds": None if cont.first_piece_seconds is None else round(cont.first_piece_seconds, 3),
            "stop_reason": cont.stop_reason,
            "trimmed": cont.trimmed,
            "truncated_story": cont.truncated_story,
            "engine": writer.engine.describe(),
            # The Writer's ranked takes (text, score and its parts) and why the winner won.
            "candidates": [{k: v for k, v in c.items() if k not in ("sentences", "flags")} for c in cont.candidates],
            "why": cont.why,
        },
    }


def check_beat(beat: str | None) -> str | None:
    """The beat a request asks for, if it is one of the show's (batplots.story.beats.BEATS)."""
    if beat is not None and beat not in beatlib.BEATS:
        raise storelib.Invalid(f"beat must be one of: {', '.join(beatlib.BEATS)}; got {beat!r}")
    return beat


def case_for(writer: Writer, story: dict, turns: list[dict]) -> dict:
    """The case file for a generation: the story's, filled in from the passages being
    continued (which may hold the writer's unsaved passage, or lack the passage Retry
    replaces); each is read once per process (#23)."""
    return storelib.refill_case(story["case_file"], storelib.passages(turns), writer.lore)


def require_text(cont: Continuation) -> str:
    text = cont.text.strip()
    if not text:
        raise ModelUnavailable(f"the model wrote no complete sentence this time (it stopped: {cont.stop_reason}); "
                               "press Continue or Retry again")
    return text


# --- stories ------------------------------------------------------------------------
@router.post("/stories", status_code=201, summary="Create a story")
def create_story(request: Request, body: NewStory | None = None) -> dict:
    settings = story_settings(request, {}, body.settings.given() if body and body.settings else {})
    return store_of(request).create(body.title if body else None, settings)


@router.get("/stories", summary="List stories, newest change first, a page at a time (Link: rel=next)")
def list_stories(request: Request, response: Response, limit: int = Query(storelib.DEFAULT_PAGE),
                 cursor: str | None = Query(None)) -> list[dict]:
    if not 1 <= limit <= storelib.MAX_PAGE:
        raise storelib.Invalid(f"limit must be from 1 to {storelib.MAX_PAGE}, got {limit}")
    stories, next_cursor = store_of(request).page(limit, cursor)
    if next_cursor is not None:
        response.headers["Link"] = f'</api/stories?limit={limit}&cursor={next_cursor}>; rel="next"'
    return stories


@router.get("/stories/{story_id}", summary="Get a story with its turns")
def get_story(request: Request, story_id: str) -> dict:
    return store_of(request).get(story_id)


@router.patch("/stories/{story_id}", summary="Rename a story and/or change its settings")
def patch_story(request: Request, story_id: str, body: StoryPatch) -> dict:
    store = store_of(request)
    if body.title is None and body.settings is None:
        raise storelib.Invalid("nothing to change: give a title and/or settings")
    settings = None
    if body.settings is not None:
        current = store.get(story_id)
        settings = story_settings(request, current["settings"], body.settings.given())
    return store.update(story_id, body.version, title=body.title, settings=settings)


@router.delete("/stories/{story_id}", status_code=204, summary="Delete a story")
def delete_story(request: Request, story_id: str, version: int = Query(description="The version you loaded")) -> Response:
    store_of(request).delete(story_id, version)
    return Response(status_code=204)


# --- turns --------------------------------------------------------------------------
@router.post("/stories/{story_id}/turns", summary="Add a passage (yours, or a picked alternative with the passage "
                                                 "you typed before it)")
def add_turn(request: Request, story_id: str, body: NewTurn) -> dict:
    store = store_of(request, story_id)
    fields = {}
    if body.author == "model":
        story = store.get(story_id)
        seed = body.seed
        if seed is not None and not MIN_SEED <= seed <= MAX_SEED:
            raise SettingsError("seed", f"seed must be from {MIN_SEED} to {MAX_SEED}, got {seed}")
        settings = generation_settings(request, story, {"seed": seed} if seed is not None else {}, fresh_seed=True)
        writer = request.app.state.models.loaded_for(story)  # the guard of the story's base
        fields = {"settings": settings.to_dict(), "seed": seed,
                  "meta": {"flags": [], "picked": True, "provenance": picked_provenance(writer, body.text, settings)}}
    elif body.seed is not None or body.user_text is not None:
        raise storelib.Invalid("seed is only for a picked alternative (author \"model\"), and so is user_text")
    if body.user_text is None:
        return store.add_turn(story_id, body.version, body.author, body.text, **fields)
    # The writer's passage and the take they picked are saved together: check both
    # (text, room for two passages) before the first is written.
    user_text, text = clean_text(body.user_text, "user_text"), clean_text(body.text)
    story = store.check_can_add(story_id, body.version)
    if len(story["turns"]) + 2 > storelib.MAX_TURNS:
        raise storelib.Invalid(f"the story has {len(story['turns'])} passages; your passage and the take would "
                               f"make it more than {storelib.MAX_TURNS}: start a new story to go on")
    story = store.add_turn(story_id, body.version, "user", user_text)
    return store.add_turn(story_id, story["version"], "model", text, **fields)


@router.patch("/stories/{story_id}/turns/{turn_id}", summary="Edit a passage in place")
def edit_turn(request: Request, story_id: str, body: EditTurn, turn_id: int = Path(ge=1, le=MAX_SQL_INT)) -> dict:
    return store_of(request, story_id).edit_turn(story_id, body.version, turn_id, body.text)


@router.post("/stories/{story_id}/undo", summary="Remove the last passage (Redo brings it back)")
def undo(request: Request, story_id: str, body: Versioned) -> dict:
    return store_of(request, story_id).undo(story_id, body.version)


@router.post("/stories/{story_id}/redo", summary="Bring back the passage undone last")
def redo(request: Request, story_id: str, body: Versioned) -> dict:
    return store_of(request, story_id).redo(story_id, body.version)


@router.put("/stories/{story_id}/case", summary="Change the case file: the fields given (a changed field is the "
                                               "writer's from then on); auto hands fields back to autofill")
def put_case(request: Request, story_id: str, body: CaseUpdate) -> dict:
    return store_of(request, story_id).set_case(story_id, body.version, body.changes(), auto=body.auto)


# --- generation ---------------------------------------------------------------------
async def _start(request: Request, story_id: str, body: ContinueRequest, retry: bool, typed: str | None = None):
    """Check everything a generation needs before the slow part and claim the story
    (one generation per story at a time); returns (writer, story, text, case, writer_text,
    settings, claim): case is the case file filled in from the passages continued, and
    writer_text the writer's own passages (a name the model brought in and the writer has
    not taken up must not lead: bible's invented-lead).
    typed: a passage the writer has not saved yet, continued as if it were (Alternatives).
    The caller releases the claim."""
    check_beat(body.beat)
    store = store_of(request)
    story = await run_in_threadpool(store.check_can_add, story_id, body.version, retry)
    writer = request.app.state.models.for_story(story).require()  # the story's base; 503 while it loads
    turns = story["turns"][:-1] if retry else story["turns"]
    if typed is not None:
        turns = turns + [{"text": clean_text(typed), "author": "user"}]
    text = storelib.story_text(turns)
    writer_text = storelib.story_text([t for t in turns if t["author"] == "user"])
    if not text:
        raise storelib.Invalid("the story is empty; write its first sentences, then press Continue")
    settings = generation_settings(request, story, body.overrides(), fresh_seed=retry)
    case = await run_in_threadpool(case_for, writer, story, turns)  # the first read of a long story is CPU
    claim = request.app.state.claims.claim(story_id, story["version"])
    return writer, story, text, case, writer_text, settings, claim


async def _generate_turn(request: Request, story_id: str, body: ContinueRequest, retry: bool):
    writer, story, text, case, writer_text, settings, claim = await _start(request, story_id, body, retry)
    store = store_of(request)
    store.lore = writer.lore  # the case file is filled in with the names of the model that wrote

    def save(cont: Continuation) -> dict:
        fields = turn_fields(cont, writer)
        if body.beat is not None:
            fields["meta"]["beat"] = body.beat  # the beat the writer asked for
        return store.add_turn(story_id, body.version, "model", require_text(cont),
                              replace_last_model=retry, **fields)

    streaming = False
    try:
        gen = claim.generation = write_passage(request.app.state.model.bridge, owner_of(request), writer, text,
                                               settings, case=case, beat=body.beat, writer_text=writer_text)
        if wants_sse(request):
            streaming = True  # the stream releases the claim when it ends
            return StreamingResponse(_sse_stream(gen, save, claim), media_type="text/event-stream",
                                     headers=SSE_HEADERS)
        try:
            cont = await gen.result(request)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; nothing was saved
        return await run_in_threadpool(save, cont)
    finally:
        if not streaming:
            claim.release()


async def _sse_stream(gen: Job, save, claim: Claim):
    """piece/rewind events while the model writes, then done {story} or error {message}.

    If the client goes away, the server stops this generator (cancelling it at an
    await); leaving `events` sets the cancel event, so the model stops and nothing
    is saved.
    """
    try:
        async for event in _sse_events(gen, save):
            yield event
    finally:
        claim.release()


async def _sse_events(gen: Job, save):
    async for kind, value in gen.events():
        if kind == "piece":
            yield sse("piece", {"text": value})
        elif kind == "rewind":
            yield sse("rewind", {"text": value})
        elif kind == "done":
            try:
                story = await run_in_threadpool(save, value)
            except (storelib.StoreError, ModelUnavailable) as exc:
                yield sse("error", error_body(exc))
                return
            yield sse("done", {"story": story})
        elif kind == "error":
            yield sse("error", {"message": f"the model failed: {value}", "status": 500})
        elif kind == "cancelled":
            yield sse("error", {"message": "the generation was cancelled", "status": 499})


@router.post("/stories/{story_id}/continue",
             summary="The model adds N sentences (JSON, or server-sent events with Accept: text/event-stream)")
async def continue_story(request: Request, story_id: str, body: ContinueRequest):
    return await _generate_turn(request, story_id, body, retry=False)


@router.post("/stories/{story_id}/retry", summary="Replace the last model passage with a new sample")
async def retry(request: Request, story_id: str, body: ContinueRequest):
    return await _generate_turn(request, story_id, body, retry=True)


@router.post("/stories/{story_id}/alternatives",
             summary="Takes to pick from, decoded together in one batch and ranked (nothing is saved; with Accept: "
                     "text/event-stream every take streams as it is written)")
async def alternatives(request: Request, story_id: str, body: AlternativesRequest):
    if not MIN_ALTERNATIVES <= body.n <= MAX_ALTERNATIVES:
        raise SettingsError("n", f"n must be from {MIN_ALTERNATIVES} to {MAX_ALTERNATIVES}, got {body.n}")
    writer, story, text, case, writer_text, settings, claim = await _start(request, story_id, body, retry=False,
                                                                          typed=body.text)
    streaming = False
    tagged = wants_sse(request)

    def batch(takes: int, batch_settings: Settings) -> Job:
        # One batch of takes, ranked (not runs one after another); the runners-up are alternatives too.
        claim.generation = write_passage(request.app.state.model.bridge, owner_of(request), writer, text,
                                         batch_settings, takes=takes, tagged=tagged,
                                         case=case, beat=body.beat, whole=True, writer_text=writer_text)
        return claim.generation

    refills = Refills(body.n, settings, batch)
    try:
        gen = batch(body.n, settings)
        if tagged:
            streaming = True  # the stream releases the claim when it ends
            return StreamingResponse(alternatives_stream(writer, gen, story["version"], claim, refills),
                                     media_type="text/event-stream", headers=SSE_HEADERS)
        try:
            cont = await gen.result(request)
            while (extra := refills.next(cont)) is not None:
                refills.merge(await extra.result(request))
        except ClientGone:
            return Response(status_code=499)
        except (EngineError, ModelUnavailable, Busy):
            if refills.first is None:
                raise
            # a failed refill: the takes there are
    finally:
        if not streaming:
            claim.release()
    return alternatives_body(writer, refills.first, story["version"], refills.extra)


# --- export -------------------------------------------------------------------------
@router.get("/stories/{story_id}/export", summary="Download as Markdown or plain text, authorship marked")
def export_story(request: Request, story_id: str, format: Literal["md", "txt"] = Query("md")) -> Response:
    story = store_of(request).get(story_id)
    name = export.slug(story["title"])
    if format == "md":
        body, media = export.to_markdown(story), "text/markdown; charset=utf-8"
    else:
        body, media = export.to_text(story), "text/plain; charset=utf-8"
    return PlainTextResponse(body, media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'})
