"""The app speaks the OpenAI completions API, so existing clients can use the Batman
model: `GET /v1/models` and `POST /v1/completions` (JSON, or server-sent events with
`"stream": true`, in OpenAI's chunk format ending with `data: [DONE]`).

These are raw completions, as any OpenAI-compatible server gives: max_tokens tokens
(or up to a stop string) of whatever the model writes, with no sentence counting and
no story store. It uses the server's one Writer's engine (`request.app.state.model`),
its lock and the same bridge and limit as story generations, so requests queue behind
them instead of thrashing the CPU.
Another batplots instance can point `--engine openai` at it.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from batplots.model.engine.base import (
    MAX_CONTEXT,
    MAX_NEW_TOKENS,
    MAX_SEED,
    MIN_NEW_TOKENS,
    MIN_SEED,
    Engine,
    EngineError,
    Settings,
    SettingsError,
)
from batplots.text import first_surrogate
from batplots.web.generation import SSE_HEADERS, Busy, ClientGone, Job, raw_pieces
from batplots.web.modelside import ModelUnavailable
from batplots.web.security import error_response, owner_of

router = APIRouter(prefix="/v1", tags=["openai"])

# OpenAI's defaults for /v1/completions.
DEFAULT_MAX_TOKENS = 16
DEFAULT_TEMPERATURE = 1.0
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64


class CompletionRequest(BaseModel):
    """OpenAI's /v1/completions body; fields other servers add (top_k,
    repetition_penalty/repeat_penalty, ignore_eos) are read too, unknown ones ignored."""

    # strict: JSON types as OpenAI documents them; max_tokens true or "8", stream "yes"
    # are 400 naming the field (a whole number where a float goes is fine).
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    prompt: str | list[str] = Field(description="The text to continue (one prompt per request).")
    max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, description=f"1 to {MAX_NEW_TOKENS} tokens to write.")
    temperature: float | None = DEFAULT_TEMPERATURE
    top_p: float | None = 1.0
    top_k: int | None = 0
    repetition_penalty: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    echo: bool = False
    ignore_eos: bool | None = None  # local engines always suppress end-of-text


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def response(self) -> JSONResponse:
        response = error_response("/v1", self.status, str(self), self.code)
        if self.param is not None:  # OpenAI's shape names the offending field
            body = json.loads(response.body)
            body["error"]["param"] = self.param
            response = JSONResponse(body, status_code=self.status)
        return response


def model_id(engine: Engine) -> str:
    """The name this app serves its model under: the adapter's name, else the base's."""
    info = engine.describe()
    return str(info.get("adapter") or info.get("model") or info.get("base") or info.get("engine"))


def _engine(request: Request) -> Engine:
    """The server's Writer's engine, or ApiError 503 saying what is going on."""
    try:
        return request.app.state.model.require().engine
    except ModelUnavailable as exc:
        raise ApiError(503, str(exc)) from exc


@router.get("/models", summary="The model this server serves (OpenAI format)")
def list_models(request: Request):
    try:
        engine = _engine(request)
    except ApiError as exc:
        return exc.response()
    return {"object": "list", "data": [{"id": model_id(engine), "object": "model", "created": 0,
                                        "owned_by": "batplots", "meta": engine.describe()}]}


def settings_of(body: CompletionRequest) -> Settings:
    """Validated sampling settings from a request, or ApiError(400) naming the field."""
    max_tokens = DEFAULT_MAX_TOKENS if body.max_tokens is None else body.max_tokens
    if isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise ApiError(400, f"max_tokens must be from 1 to {MAX_NEW_TOKENS}, got {max_tokens}", "max_tokens")
    penalty = body.repetition_penalty if body.repetition_penalty is not None else body.repeat_penalty
    seed = body.seed if body.seed is not None else random.SystemRandom().randint(MIN_SEED, MAX_SEED)
    settings = Settings(
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p, top_k=body.top_k or 0,
        repetition_penalty=1.0 if penalty is None else penalty, seed=seed,
        max_context=MAX_CONTEXT, max_new_tokens=MIN_NEW_TOKENS)
    try:
        settings.validate()  # ranges of the sampling fields; max_new_tokens is checked above
    except SettingsError as exc:
        raise ApiError(400, str(exc), exc.field) from exc
    # Not validated again: raw completions may be shorter than a story turn's
    # MIN_NEW_TOKENS, and pieces() reads only the sampling fields and this cap.
    return replace(settings, max_new_tokens=max_tokens)


def check_unicode(text: str, param: str) -> str:
    bad = first_surrogate(text)
    if bad is not None:
        raise ApiError(400, f"{param} contains an unpaired surrogate (U+{ord(text[bad]):04X}) at character {bad + 1}; "
                            "send valid Unicode text", param)
    return text


def stops_of(body: CompletionRequest) -> list[str]:
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    stops = [check_unicode(s, "stop") for s in stops if s]
    if len(stops) > MAX_STOP_SEQUENCES or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ApiError(400, f"stop takes at most {MAX_STOP_SEQUENCES} strings of at most {MAX_STOP_CHARS} "
                            "characters each", "stop")
    return stops


def stop_cut(text: str, stops: list[str]) -> tuple[int, bool]:
    """How much of text may be sent: (length, hit). With hit, text[:length] is the
    final completion (cut before the earliest stop string). Otherwise the length
    holds back a tail that could still grow into a stop string."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if hits:
        return min(hits), True
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return len(text) - hold, False


async def texts(job: Job, stops: list[str], request: Request | None = None):
    """Yield ("text", chunk) as it becomes safe to send, then ("finish", reason,
    completion_tokens); raises the engine's error, or ClientGone (request given: a
    non-streamed answer has nothing else to notice the client leaving)."""
    text, sent, tokens = "", 0, 0
    try:
        async for kind, value in job.events(request):
            if kind == "error":
                raise value
            if kind == "cancelled":
                return
            if kind == "done":
                if sent < len(text):
                    yield "text", text[sent:]
                yield "finish", "length", tokens
                return
            tokens += 1
            text += value
            cut, hit = stop_cut(text, stops)
            if cut > sent:
                yield "text", text[sent:cut]
                sent = cut
            if hit:
                yield "finish", "stop", tokens
                return
    finally:
        # At once: the inner event generator is only closed when collected.
        job.cancel.set()


@router.post("/completions", summary="Continue a prompt (OpenAI format; stream=true for server-sent events)")
async def completions(request: Request, body: CompletionRequest):
    try:
        engine = _engine(request)
        name = model_id(engine)
        if body.model and body.model != name:
            raise ApiError(404, f"model {body.model!r} is not served here; GET /v1/models lists {name!r}",
                           "model", "model_not_found")
        if body.n != 1:
            raise ApiError(400, f"n must be 1 (one completion per request), got {body.n}", "n")
        if body.echo:
            raise ApiError(400, "echo is not supported", "echo")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise ApiError(400, f"send one prompt per request, got {len(prompts)}", "prompt")
        prompt = check_unicode(prompts[0], "prompt")
        settings = settings_of(body)
        stops = stops_of(body)
        prompt_tokens = engine.count_tokens(prompt)
        if prompt_tokens + settings.max_new_tokens > MAX_CONTEXT:
            raise ApiError(400, f"the prompt ({prompt_tokens} tokens) plus max_tokens ({settings.max_new_tokens}) "
                                f"exceed the context of {MAX_CONTEXT} tokens", "prompt")
        try:
            job = raw_pieces(request.app.state.model.bridge, owner_of(request), engine, prompt, settings)
        except Busy as exc:
            raise ApiError(503, str(exc)) from exc
    except ApiError as exc:
        return exc.response()
    meta = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": name}

    def choice(text: str, finish: str | None) -> dict:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    def usage(completion_tokens: int) -> dict:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    if body.stream:
        async def events():
            try:
                async for event in texts(job, stops):
                    if event[0] == "text":
                        yield _sse({**meta, "choices": [choice(event[1], None)]})
                    else:
                        yield _sse({**meta, "choices": [choice("", event[1])], "usage": usage(event[2])})
            except Exception as exc:  # headers are sent: report in the stream, as OpenAI does
                yield _sse({"error": {"message": f"the model failed: {exc}", "type": "server_error"}})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    parts, finish, tokens = [], "length", 0
    try:
        async for event in texts(job, stops, request):
            if event[0] == "text":
                parts.append(event[1])
            else:
                finish, tokens = event[1], event[2]
    except ClientGone:
        return Response(status_code=499)  # nobody reads it; the model was stopped (texts' finally)
    except Exception as exc:
        return ApiError(502 if isinstance(exc, EngineError) else 500, f"the model failed: {exc}").response()
    return {**meta, "choices": [choice("".join(parts), finish)], "usage": usage(tokens)}


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
