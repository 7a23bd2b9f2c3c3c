"""The login page, logging in and out, and who is signed in (`GET /api/session`).

Only a server with accounts (a network address, see batplots.web.security) has a
login; on loopback /login sends the browser straight to the app. Failed logins
are limited per client address and per user name.
"""

from __future__ import annotations

import html
import time
from collections import deque
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from batplots.store import accounts
from batplots.story.export import page
from batplots.web.security import SESSION_COOKIE, current_user

router = APIRouter(tags=["accounts"])

MAX_LOGIN_FAILURES = 5  # failed logins per client address, and per user name...
LOGIN_WINDOW_SECONDS = 60.0  # ...within this many seconds; then 429 until the oldest ages out
MAX_TRACKED_KEYS = 10_000  # addresses and names remembered at once (memory bound)
MAX_LOGIN_FIELDS = 8


class LoginLimiter:
    """Failed-login counts in a sliding window, per key ("ip:..." and "name:...")."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._failures: dict[str, deque] = {}

    def wait_seconds(self, keys: list[str]) -> float:
        """How long until these keys may try again (0: now)."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._failures.get(key)
            if times is None:
                continue
            while times and times[0] <= now - LOGIN_WINDOW_SECONDS:
                times.popleft()
            if len(times) >= MAX_LOGIN_FAILURES:
                wait = max(wait, times[0] + LOGIN_WINDOW_SECONDS - now)
        return wait

    def failed(self, keys: list[str]) -> None:
        if len(self._failures) >= MAX_TRACKED_KEYS:
            self._failures.pop(next(iter(self._failures)))  # forget the longest-tracked key
        now = self._clock()
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=MAX_LOGIN_FAILURES)).append(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def login_page(message: str = "", next_path: str = "/", name: str = "") -> str:
    esc = html.escape
    note = f'<p class="login-error" role="alert">{esc(message)}</p>' if message else ""
    return page("Log in", "panel share-panel login-panel", f"""  <h1 class="story-title">To the Batcave!</h1>
  <p>This server keeps each writer's stories apart. Log in to see yours.</p>
  {note}
  <form class="login-form" method="post" action="/login">
    <input type="hidden" name="next" value="{esc(next_path)}">
    <label for="login-name">Name</label>
    <input id="login-name" name="name" autocomplete="username" required maxlength="{accounts.MAX_NAME_CHARS}"
      value="{esc(name)}" autofocus>
    <label for="login-password">Password</label>
    <input id="login-password" name="password" type="password" autocomplete="current-password" required
      maxlength="{accounts.MAX_PASSWORD_CHARS}">
    <button type="submit" class="btn btn-big btn-red">Log in</button>
  </form>
  <p class="share-foot">No account? The person who runs this server adds one with
    <code>batplots users add NAME</code>.</p>""")


def _accounts_on(request: Request) -> bool:
    return request.app.state.config.security.accounts


@router.get("/login", response_class=HTMLResponse, summary="The login page (servers with accounts)")
def show_login(request: Request, next: str = "/"):
    if not _accounts_on(request) or current_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return HTMLResponse(login_page(next_path=safe_next(next)), headers={"Cache-Control": "no-store"})


@router.post("/login", summary="Log in with a form (name, password, next): sets the session cookie")
async def log_in(request: Request):
    if not _accounts_on(request):
        return JSONResponse({"detail": "this server has no accounts (it listens on a loopback address): "
                                       "no login is needed"}, status_code=404)
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return JSONResponse({"detail": "send the login as a form (application/x-www-form-urlencoded) with the "
                                       "fields name and password"}, status_code=415)
    try:
        fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=MAX_LOGIN_FIELDS)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    name = (fields.get("name") or [""])[0].strip()
    password = (fields.get("password") or [""])[0]
    next_path = safe_next((fields.get("next") or ["/"])[0])
    limiter: LoginLimiter = request.app.state.login_limiter
    keys = [f"ip:{request.client.host if request.client else '?'}", f"name:{name.lower()}"]
    wait = limiter.wait_seconds(keys)
    if wait > 0:
        seconds = int(wait) + 1
        return HTMLResponse(login_page(f"Too many failed logins. Try again in {seconds} seconds.", next_path, name),
                            status_code=429, headers={"Retry-After": str(seconds), "Cache-Control": "no-store"})
    store = request.app.state.store
    user = await run_in_threadpool(accounts.verify, store, name, password) if name and password else None
    if user is None:
        limiter.failed(keys)
        return HTMLResponse(login_page("Wrong name or password.", next_path, name), status_code=401,
                            headers={"Cache-Control": "no-store"})
    limiter.succeeded(keys)
    token = await run_in_threadpool(accounts.start_session, store, user["id"])
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=accounts.SESSION_DAYS * 86400, path="/", httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    return response


@router.post("/logout", summary="Log out: ends the session")
async def log_out(request: Request):
    token = request.cookies.get(SESSION_COOKIE)
    if token and _accounts_on(request):
        await run_in_threadpool(accounts.end_session, request.app.state.store, token)
    response = RedirectResponse("/login" if _accounts_on(request) else "/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=request.url.scheme == "https")
    return response


@router.get("/api/session", tags=["stories"], summary="Who is signed in, and whether this server has accounts")
def session_info(request: Request) -> dict:
    user = current_user(request)
    security = request.app.state.config.security
    return {"user": user["name"] if user else None, "accounts": security.accounts, "warning": security.warning,
            "public_url": request.app.state.config.public_url}
