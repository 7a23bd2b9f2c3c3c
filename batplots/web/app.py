"""The web app: `create_app(config)` builds it; `batplots serve` runs it.

The Writer (the model with its copy guard, lore and conditioning) is loaded once, in
a background thread started by the lifespan, so the page and the story API answer at
once; requests that need the model get 503 with a clear message until it is ready
(/healthz says which). It lives in `app.state.model` (batplots.web.modelside), the
server's own model side; `app.state.models` (batplots.web.bases) adds the other named
base when serve offers it, for the stories that choose it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from batplots.store import stories as storelib
from batplots.model.engine.base import Settings
from batplots.story import export
from batplots.model.bases import Base
from batplots.web import login
from batplots.web.bases import Models
from batplots.web.modelside import ModelSide
from batplots.web.generation import StoryClaims
from batplots.web.openai_api import router as openai_router
from batplots.web.errors import install_error_handlers
from batplots.web.routes import router
from batplots.web.security import BodyCheck, Guard, SecurityConfig, current_user, error_response
from batplots.story.writer import Writer

STATIC_DIR = Path(__file__).parent / "static"
# Request bodies larger than this are refused with 413 before they are read in full
# (the largest legitimate body is one passage of MAX_TURN_CHARS characters).
MAX_BODY_BYTES = 64 * 1024
# The pages load only their own files: no CDN, no inline script, nothing external.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@dataclass
class WebConfig:
    """What the app needs. Give `writer` (tests) or `load_writer` (serve:
    batplots.story.writer.open_writer, called once in a background thread at start-up)."""

    db_path: Path | str  # a SQLite file, or a postgresql:// URL
    settings: Settings = field(default_factory=Settings)  # server defaults (story settings override)
    writer: Writer | None = None
    load_writer: Callable[[], Writer] | None = None
    security: SecurityConfig = field(default_factory=SecurityConfig)  # loopback, no login, unless serve says
    # The address readers reach this server by (serve --public-url, e.g. behind a proxy):
    # share links start with it; without it the page uses the address it was opened by.
    public_url: str | None = None
    # The named base the Writer above runs (serve's --base when it names one), and the other
    # named base with what loads its Writer, the first time a story asks for it (batplots.web.bases).
    base: Base | None = None
    other_base: Base | None = None
    load_other: Callable[[], Writer] | None = None


def check_public_url(url: str) -> str:
    """A --public-url as share links use it (no trailing slash); ValueError says what is wrong."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--public-url must be an http:// or https:// address with a host name, "
                         f"e.g. https://bats.example.org, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"--public-url must have no ?query or #fragment (share links add /s/ID), got {url!r}")
    return url.strip().rstrip("/")


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.model.start()
    yield
    app.state.store.close()  # the PostgreSQL pool's connections


def create_app(config: WebConfig) -> FastAPI:
    app = FastAPIOffline(
        title="Batplots",
        description="Co-write new episodes of the 1966 Batman TV series with a small language model.",
        version="1",
        lifespan=lifespan,
        static_url="/static-docs",
    )
    state = app.state
    state.config = config
    state.store = storelib.Store(config.db_path)
    state.model = ModelSide(config.writer, config.load_writer, base=config.base)
    state.models = Models(state.model, config.other_base, config.load_other)  # one bridge for both
    state.claims = StoryClaims()  # one generation per story at a time
    state.login_limiter = login.LoginLimiter(state.store)  # counts in the database: every instance shares them

    install_error_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in (UnicodeEncodeError, OverflowError):  # backstops; inputs are checked before SQLite
        app.add_exception_handler(exc_type, _unstorable_input)
    app.add_middleware(BodyCheck)
    app.add_middleware(_BodyLimit)
    app.add_middleware(Guard, config=config.security, store=state.store)
    app.add_middleware(_PageHeaders)
    app.include_router(router)
    app.include_router(login.router)
    app.include_router(openai_router)  # /v1: the OpenAI completions API
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["server"], summary="Is the model ready? What is loaded?")
    def healthz(request: Request) -> dict:
        health = {**request.app.state.model.health(), "models": request.app.state.models.health()}
        if request.app.state.config.security.accounts and current_user(request) is None:
            return public_health(health)
        return health

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/s/{share_id}", response_class=HTMLResponse, tags=["stories"], summary="Read-only shared story page")
    def shared(request: Request, share_id: str):
        try:
            story = request.app.state.store.get_by_share(share_id)
        except storelib.NotFound:
            return HTMLResponse(export.not_found_page("No story is shared under this link. It may have been "
                                                      "deleted, or the link was mistyped."), status_code=404)
        return HTMLResponse(export.share_page(story))

    return app


def public_health(health: dict) -> dict:
    """/healthz for someone not signed in to a server with accounts: whether the model is
    ready, loading or failed, and its name; no file paths, engine details or error text
    (the server's log and a signed-in /healthz have them)."""
    out = {"status": health.get("status")}
    model = health.get("model") or {}
    name = model.get("adapter") or model.get("model") or model.get("base") or model.get("engine")
    if name is not None:
        out["model"] = Path(str(name)).name  # a path's last part only
    if "seconds" in health:
        out["seconds"] = health["seconds"]
    if health.get("status") == "error":
        out["error"] = "the model failed to load; the server's log says why"
    out["models"] = [public_model(m) for m in health.get("models", ())]
    return out


# What an anonymous /healthz says of each model offered.
PUBLIC_MODEL_KEYS = ("role", "name", "label", "status", "default", "seconds")


def public_model(entry: dict) -> dict:
    out = {k: entry[k] for k in PUBLIC_MODEL_KEYS if k in entry}
    for key in ("name", "label"):  # an unnamed model's name may be a path: its last part only
        if out.get(key) is not None:
            out[key] = Path(str(out[key])).name
    return out


def describe_validation_errors(errors: list[dict]) -> str:
    """One sentence per problem, naming the field and what is allowed."""
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc)
        kind = err.get("type", "")
        if kind == "json_invalid":
            parts.append(f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})")
        elif kind == "missing" and not loc:
            parts.append("the request body is missing; send a JSON object")
        elif kind == "missing":
            parts.append(f"{where} is required")
        elif kind == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif kind in ("model_attributes_type", "dict_type") and not loc:
            parts.append("the request body must be a JSON object")
        else:
            parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _validation_error(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    if request.url.path.startswith("/v1"):  # OpenAI clients read {"error": {...}} and 400
        return error_response(request.url.path, 400, describe_validation_errors(errors))
    return JSONResponse({"detail": describe_validation_errors(errors),
                         "errors": jsonable_encoder([{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors])},
                        status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException):
    if request.url.path.startswith("/v1"):
        return error_response(request.url.path, exc.status_code, str(exc.detail))
    return await http_exception_handler(request, exc)


async def _unstorable_input(request: Request, exc: Exception):
    what = "a number is out of range" if isinstance(exc, OverflowError) else "text is not valid Unicode"
    return error_response(request.url.path, 422, f"the request cannot be stored: {what} ({exc})")


class _BodyTooLarge(Exception):
    pass


class _BodyLimit:
    """413 for bodies over MAX_BODY_BYTES, by Content-Length or by counting a chunked body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return await _send_413(scope, send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_413(scope, send)


async def _send_413(scope, send):
    await error_response(scope["path"], 413, f"the request body is too large; at most {MAX_BODY_BYTES} bytes are "
                                             "accepted")({"type": "http"}, None, send)


# The API's own pages (/docs: Swagger UI, /redoc), served from /static-docs: their one
# inline script is allowed by its hash (worked out from the page as it is sent); the
# viewers set inline styles and ReDoc runs a worker from a blob.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CSP = ("default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_csp(body: bytes) -> str:
    """DOCS_CSP allowing exactly the inline scripts of this page body."""
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
                     for m in _INLINE_SCRIPT.finditer(body))
    return DOCS_CSP.format(hashes=hashes)


class _PageHeaders:
    """Security headers: a strict CSP on our pages, DOCS_CSP on the API's documentation
    pages, and no MIME sniffing anywhere; no page may be framed by another site."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/docs" or path.startswith(DOCS_PATHS):
            return await self._docs(scope, receive, send)
        strict = not path.startswith("/static-docs")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if strict:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                    headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope, receive, send):
        """A documentation page, held until its body is complete (a few KB), then sent
        with the CSP that allows its inline script by hash."""
        start, chunks = None, []

        async def hold(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers += [(b"content-length", str(len(body)).encode()), (b"x-content-type-options", b"nosniff"),
                            (b"content-security-policy", docs_csp(body).encode()), (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"no-referrer")]
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, hold)


def serve(app: FastAPI, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Run app under uvicorn until Ctrl+C; announce(url) once it listens."""
    import uvicorn

    from batplots.web.serving import server_config

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                bound_host, bound_port = self.servers[0].sockets[0].getsockname()[:2]
                shown = "127.0.0.1" if bound_host in ("0.0.0.0", "::") else bound_host
                shown = f"[{shown}]" if ":" in shown else shown
                announce(f"http://{shown}:{bound_port}/")

    Server(server_config(app, host, port, log_level="warning")).run()  # header limits: batplots.web.serving
