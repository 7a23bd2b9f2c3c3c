"""The login page, logging in and out, and who is signed in (`GET /api/session`).

Only a server with accounts (a network address, see batplots.web.security) has a
login; on loopback /login sends the browser straight to the app. Failed logins
are limited per client address and per user name.
"""

from __future__ import annotations

import asyncio
import html
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from batplots.store import accounts
from batplots.story.export import page
from batplots.web.security import SESSION_COOKIE, current_user

router = APIRouter(tags=["accounts"])

# The limit itself is the store's (shared by every instance on one database):
MAX_LOGIN_FAILURES = accounts.MAX_LOGIN_FAILURES  # failed logins per client address, and per account...
LOGIN_WINDOW_SECONDS = accounts.LOGIN_WINDOW_SECONDS  # ...within this many seconds; then 429
MAX_LOGIN_FIELDS = 8
# Password checks run on a pool of their own (Argon2id: ~0.1 s and 64 MiB each), so a
# flood of logins waits there and never holds the threads that serve pages and the API.
HASH_THREADS = accounts.MAX_CONCURRENT_HASHES
# Logins waiting for or in a password check at once (past the limiter); past this, 503
# "try again", and the attempt is not counted.
MAX_WAITING_LOGINS = 16
LOGINS_BUSY_RETRY_S = 2
LoginLimiter = accounts.LoginLimiter

_pool: ThreadPoolExecutor | None = None
_waiting = 0  # logins waiting for or in a password check (touched only on the event loop)


def _hash_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="batplots-login")
    return _pool


def _check_password(store, name: str, password: str):
    """accounts.verify on the login pool (a future); None (a failed login) for an empty field."""
    if not name or not password:
        return None
    return asyncio.wrap_future(_hash_pool().submit(accounts.verify, store, name, password))


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
    global _waiting
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
    address = request.client.host if request.client else "?"
    attempt, wait = await run_in_threadpool(limiter.begin, address, name)  # counted before the check
    if attempt is None:
        seconds = int(wait) + 1
        return HTMLResponse(login_page(f"Too many failed logins. Try again in {seconds} seconds.", next_path, name),
                            status_code=429, headers={"Retry-After": str(seconds), "Cache-Control": "no-store"})
    if _waiting >= MAX_WAITING_LOGINS:  # the password checks are all taken: nothing checked, nothing counted
        await run_in_threadpool(limiter.succeeded, attempt)
        return HTMLResponse(login_page(f"Too many logins at once. Try again in {LOGINS_BUSY_RETRY_S} seconds.",
                                       next_path, name), status_code=503,
                            headers={"Retry-After": str(LOGINS_BUSY_RETRY_S), "Cache-Control": "no-store"})
    _waiting += 1  # until its password is checked
    try:
        checking = _check_password(request.app.state.store, name, password)
        user = await checking if checking is not None else None
    finally:
        _waiting -= 1
    if user is None:
        return HTMLResponse(login_page("Wrong name or password.", next_path, name), status_code=401,
                            headers={"Cache-Control": "no-store"})
    await run_in_threadpool(limiter.succeeded, attempt)
    token = await run_in_threadpool(accounts.start_session, request.app.state.store, user["id"])
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
