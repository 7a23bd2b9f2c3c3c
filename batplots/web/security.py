"""Who may talk to the app, checked before any route runs.

- Host allowlist: a page on another site that rebinds its DNS name to 127.0.0.1
  (DNS rebinding) sends its own name as Host, and is refused.
- Same-origin writes: a POST/PATCH/PUT/DELETE whose Origin is another site (a
  hostile page's form or no-cors fetch) is refused, so it cannot create, change or
  delete stories on the user's behalf.
- /v1 takes a Bearer key (`--api-key`); on a network address it is off without one.
- On a network address, accounts: every page and /api call needs a session
  cookie, except the login page, share links, static files and /healthz.

Loopback stays a one-person tool with no login. Also here: request bodies that
are not UTF-8 or nest too deep are refused with 422 before JSON parsing.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import anyio
from fastapi import Request
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse

from batplots.store import accounts
from batplots.store.db import Unavailable
from batplots.web.generation import CLIENT_ADDRESS

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_COOKIE = "batplots_session"
USER_SCOPE_KEY = "batplots.user"  # the signed-in user {id, name}, in the ASGI scope
# Reachable without a session on a server with accounts.
PUBLIC_PATHS = frozenset({"/login", "/logout", "/healthz"})
PUBLIC_PREFIXES = ("/static/", "/s/")
MIN_API_KEY_CHARS = 16
MAX_JSON_DEPTH = 32  # our bodies nest 2 deep; Python's parser recurses per level


class SecurityError(ValueError):
    """A serving configuration that would be unsafe; the message says what to do."""


@dataclass(frozen=True)
class SecurityConfig:
    """allowed_hosts: Host names answered (None: any, on a wildcard network address
    without --allowed-host, where accounts protect the data). accounts: sessions
    required. api_key: the /v1 Bearer key. v1_open: /v1 answers without a key when
    none is set (loopback). warning: shown on the page (--no-auth on a network). local:
    a one-person loopback server, which answers only clients on this machine: a request
    that a proxy forwarded from another address (uvicorn reads X-Forwarded-For from
    127.0.0.1) is refused, since loopback trust must not rest on the Host header alone."""

    allowed_hosts: frozenset[str] | None = frozenset(LOOPBACK_NAMES)
    accounts: bool = False
    api_key: str | None = None
    v1_open: bool = True
    warning: str | None = None
    local: bool = True


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header (or an Origin's netloc): lower case, without the port,
    IPv6 brackets or a trailing dot."""
    h = header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.split(":")[0]
    return h.rstrip(".")


def allowed_host_arg(name: str) -> str:
    """An --allowed-host value, checked: a bare host name or address."""
    clean = name.strip().lower().strip("[]").rstrip(".")
    if not clean or any(c in clean for c in "/@ ") or (clean.count(":") == 1):
        raise SecurityError(f"--allowed-host {name!r}: give a host name or address without scheme, port or path, "
                            "e.g. --allowed-host plots.example.com")
    return clean


def serving_config(host: str, allowed_hosts: tuple[str, ...], api_key: str | None, no_auth: bool,
                   user_count: int, add_user_hint: str) -> tuple[SecurityConfig, list[str]]:
    """The SecurityConfig of `batplots serve` and the notes to print at start; raises
    SecurityError (refusing to start) for a network address (or a loopback one answering
    another name) with no user and no --no-auth."""
    extra = tuple(allowed_host_arg(h) for h in allowed_hosts)
    if api_key is not None and len(api_key) < MIN_API_KEY_CHARS:
        raise SecurityError(f"--api-key has {len(api_key)} characters; use at least {MIN_API_KEY_CHARS} random ones, "
                            "e.g. from: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")
    notes = []
    # A loopback server answering another name (--allowed-host) sits behind a proxy or a
    # tunnel that others reach: it needs accounts as much as a network address does.
    if is_loopback(host) and all(is_loopback(name) for name in extra):
        if no_auth:
            notes.append("--no-auth changes nothing on a loopback address: there is no login there")
        return SecurityConfig(frozenset(LOOPBACK_NAMES + extra), False, api_key, True, None, local=True), notes
    if host.strip("[]") in WILDCARD_HOSTS:
        allowed = frozenset(LOOPBACK_NAMES + extra) if extra else None
    else:
        allowed = frozenset(LOOPBACK_NAMES + (host_name(host),) + extra)
    where = host if not is_loopback(host) else f"{host} for {', '.join(extra)}"
    if allowed is None and no_auth:
        # With no login, answering any Host lets a web page that rebinds its DNS name to this
        # server (DNS rebinding) read and change every story through a visitor's browser.
        raise SecurityError(f"--no-auth on {host} needs --allowed-host NAME (repeatable): the names or addresses "
                            "people reach this server by, e.g. --allowed-host 192.168.1.20; with no login, "
                            "answering any Host name would let any web page change the stories (DNS rebinding)")
    if allowed is None:
        notes.append("any Host name is answered; --allowed-host NAME (repeatable) answers only the names you use")
    if api_key is None:
        notes.append("/v1 (the OpenAI API) is off: on a network address it needs --api-key KEY")
    if no_auth:
        warning = (f"--no-auth: this server listens on {where} with no login; anyone who can reach it can read, "
                   "change and delete every story")
        notes.append(f"WARNING: {warning}")
        return SecurityConfig(allowed, False, api_key, False, warning, local=False), notes
    if user_count == 0:
        raise SecurityError(f"serving on {where} opens the app to the network, and this story database has no "
                            f"user yet. Add one first: {add_user_hint} (or serve on 127.0.0.1, or pass --no-auth "
                            "to let everyone who can reach it read, change and delete every story)")
    return SecurityConfig(allowed, True, api_key, False, None, local=False), notes


def current_user(request: Request) -> dict | None:
    return request.scope.get(USER_SCOPE_KEY)


def owner_of(request: Request) -> int | None:
    """Whose stories this request sees: the signed-in user's, or (no accounts) None."""
    user = current_user(request)
    return user["id"] if user else None


def error_response(path: str, status: int, message: str, code: str | None = None) -> JSONResponse:
    """{"detail"} for the app, OpenAI's {"error": {...}} under /v1."""
    if path == "/v1" or path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    else:
        body = {"detail": message}
    return JSONResponse(body, status_code=status)


def cross_site(headers: Headers) -> str | None:
    """Why a state-changing request comes from another site, or None. Browsers send
    Origin with every POST, PATCH and DELETE; clients such as curl send none."""
    host = _netloc(headers.get("host", ""))
    origin = headers.get("origin")
    if origin is not None:
        if origin.strip().lower() == "null":
            # Our pages send no referrer (Referrer-Policy: no-referrer), so Chromium posts
            # their forms (login, logout) with Origin: null; Sec-Fetch-Site is set by the
            # browser alone, never by a page, and tells them apart from a sandboxed page.
            if headers.get("sec-fetch-site") == "same-origin":
                return None
            return "its Origin is null (a sandboxed page or a local file)"
        try:
            netloc = urlsplit(origin.strip()).netloc
        except ValueError:  # "http://[": not a URL at all
            return f"its Origin {origin[:80]!r} is not a valid scheme://host[:port]"
        if _netloc(netloc) != host:
            return f"it comes from {origin}, another site than this one ({host})"
        return None
    if headers.get("sec-fetch-site") == "cross-site":
        return "the browser marks it as cross-site"
    return None


def _netloc(value: str) -> str:
    value = value.strip().lower()
    for default in (":80", ":443"):
        if value.endswith(default):
            return value[: -len(default)]
    return value


class Guard:
    """The ASGI middleware that applies a SecurityConfig (see the module docstring)."""

    def __init__(self, app, config: SecurityConfig, store):
        self.app, self.config, self.store = app, config, store

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        CLIENT_ADDRESS.set(accounts.address_key(client[0] if client else None))  # this request's task only
        refusal = await self._refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send)
        await self.app(scope, receive, send)

    async def _refusal(self, scope):
        """The response refusing this request, or None (then the user, if any, is in the scope)."""
        cfg, path = self.config, scope["path"]
        headers = Headers(scope=scope)
        raw_host = headers.get("host", "")
        if cfg.allowed_hosts is not None and host_name(raw_host) not in cfg.allowed_hosts:
            names = ", ".join(sorted(cfg.allowed_hosts))
            return error_response(path, 403, f"the Host {raw_host!r} is not a name this server answers to ({names}); "
                                             "to reach it by another name, start it with --allowed-host NAME",
                                  "host_not_allowed")
        client = scope.get("client")
        if cfg.local and not cfg.accounts and client and not is_loopback(client[0]):
            return error_response(path, 403, f"this server listens on loopback for one person and answers only "
                                             f"this machine; a request forwarded from {client[0]} (through a proxy) "
                                             "is refused. To serve others, give the proxy's public name with "
                                             "--allowed-host NAME and add accounts (batplots users add NAME)",
                                  "not_local")
        if scope["method"] in UNSAFE_METHODS:
            why = cross_site(headers)
            if why is not None:
                return error_response(path, 403, f"cross-site request refused: {why}; change stories from this "
                                                 "server's own page or from a client that sends no Origin",
                                      "cross_site")
        if path == "/v1" or path.startswith("/v1/"):
            return self._v1_refusal(path, headers)
        if not cfg.accounts:
            return None
        token = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        try:
            user = await anyio.to_thread.run_sync(accounts.session_user, self.store, token) if token else None
        except Unavailable as exc:  # the database is busy or down: say so, never 500
            return error_response(path, 503, str(exc))
        if user is not None:
            scope[USER_SCOPE_KEY] = user
            return None
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
        return error_response(path, 401, "log in first: this server has accounts (open it in a browser, or POST "
                                         "/login with name and password and send the session cookie back)")

    def _v1_refusal(self, path: str, headers: Headers):
        cfg = self.config
        if cfg.api_key is None:
            if cfg.v1_open:
                return None
            return error_response(path, 403, "the OpenAI API (/v1) is off: this server listens on a network address "
                                             "without an API key; restart it with --api-key KEY", "api_disabled")
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1", "replace"),
                                                               cfg.api_key.encode("utf-8")):
            return None
        return error_response(path, 401, "this server's /v1 needs its API key: send the header "
                                         "'Authorization: Bearer KEY' (the key given to batplots serve --api-key)",
                              "invalid_api_key")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than limit (brackets inside
    strings are skipped)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class BodyCheck:
    """JSON bodies that are not UTF-8, or nest deeper than MAX_JSON_DEPTH, get a clear
    422 (400 in OpenAI's shape under /v1) instead of the framework's bare 400. The
    body (already bounded by the size limit outside) is read here and replayed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            return await self.app(scope, receive, send)
        ctype = Headers(scope=scope).get("content-type", "").lower()
        if ctype and "json" not in ctype:
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        path = scope["path"]
        status = 400 if path.startswith("/v1") else 422
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return await error_response(path, status, f"the request body is not valid UTF-8 (byte {exc.start}); "
                                                      "send JSON text encoded as UTF-8")(scope, receive, send)
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            return await error_response(path, status, f"the request body nests deeper than {MAX_JSON_DEPTH} levels "
                                                      "of arrays and objects; send a flat JSON object")(scope, receive,
                                                                                                        send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later: the disconnect, which generation waits on

        await self.app(scope, replay, send)
