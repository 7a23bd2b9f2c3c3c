"""The login limit holds under concurrency (issue 23, second row).

A login attempt is counted in the database before its password is checked, in one
serialised transaction, so 40 guesses sent at once from one address get at most
MAX_LOGIN_FAILURES checks, on one instance or several (two Stores on one PostgreSQL
database, or one SQLite file); a correct password from an address without failures
still gets in; password checks run on their own small pool, never on the threads that
serve pages. Store tests on SQLite and PostgreSQL; web tests over real HTTP on 127.0.0.1
(uvicorn trusts X-Forwarded-For from 127.0.0.1, which stands in for other addresses)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from batplots.store import accounts
from batplots.store.stories import Store
from batplots.web import login as loginlib
from batplots.web.security import SESSION_COOKIE, SecurityConfig
from tests.webserver import WAIT_S, make_server  # noqa: F401

NETWORK = SecurityConfig(allowed_hosts=None, accounts=True, api_key=None, v1_open=False)
LIMIT = accounts.MAX_LOGIN_FAILURES


@pytest.fixture(params=["sqlite", "postgresql"])
def two_instances(request, tmp_path):
    """Two Stores on one database: two app instances' views of the limiter's table."""
    target = str(tmp_path / "s.sqlite3") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    stores = [Store(target), Store(target)]
    yield stores
    for s in stores:
        s.close()


def test_40_simultaneous_attempts_from_one_address_get_at_most_the_limit_on_two_instances(two_instances):
    limiters = [accounts.LoginLimiter(s) for s in two_instances]
    start = threading.Barrier(40)

    def attempt(i):
        start.wait()
        return limiters[i % 2].begin("198.51.100.7", "alice")

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(attempt, range(40)))
    admitted = [a for a, _ in results if a is not None]
    assert len(admitted) == LIMIT
    assert all(0 < wait <= accounts.LOGIN_WINDOW_SECONDS for a, wait in results if a is None)


def test_strangers_cannot_lock_an_account_against_an_address_without_failures(two_instances):
    limiter = accounts.LoginLimiter(two_instances[0])
    for i in range(LIMIT):  # five strangers, five addresses, one wrong guess each
        assert limiter.begin(f"203.0.113.{i}", "alice")[0] is not None
    assert limiter.begin("203.0.113.0", "alice")[0] is None  # a stranger who failed at alice: refused
    mine, wait = limiter.begin("192.0.2.10", "alice")  # alice, from an address with no failures
    assert mine is not None and wait == 0
    limiter.succeeded(mine)
    # An IPv6 address counts as its /64: a stranger cannot walk through 2**64 addresses.
    for i in range(LIMIT):
        assert limiter.begin(f"2001:db8::{i + 1}", f"name{i}")[0] is not None
    assert limiter.begin("2001:db8::ffff", "someone")[0] is None
    assert accounts.address_key("::ffff:192.0.2.1") == "ip:192.0.2.1"


@pytest.fixture
def net(make_server):  # noqa: F811
    srv = make_server(security=NETWORK)
    accounts.add_user(srv.app.state.store, "alice", "alice-secret-1")
    return srv


def post_login(url, name, password, address=None):
    headers = {"X-Forwarded-For": address} if address else {}
    with httpx.Client(base_url=url, timeout=WAIT_S) as c:
        return c.post("/login", data={"name": name, "password": password, "next": "/"}, headers=headers)


def test_40_parallel_guesses_over_http_get_at_most_the_limit_of_401s_and_the_rest_429(net):
    start = threading.Barrier(40)

    def guess(i):
        start.wait()
        return post_login(net.url, "alice", f"wrong-guess-{i}").status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))
    assert statuses.count(401) <= LIMIT and statuses.count(429) == 40 - statuses.count(401), statuses
    assert post_login(net.url, "alice", "alice-secret-1").status_code == 429  # this address is limited
    ok = post_login(net.url, "alice", "alice-secret-1", address="192.0.2.44")  # the owner, elsewhere
    assert ok.status_code == 303 and SESSION_COOKIE in ok.cookies


def test_a_flood_of_failed_logins_waits_on_its_own_pool_and_pages_still_answer(net, monkeypatch):
    ok = post_login(net.url, "alice", "alice-secret-1")
    cookies = {SESSION_COOKIE: ok.cookies[SESSION_COOKIE]}
    threads_used, release, waiting = set(), threading.Event(), []
    verify = accounts.verify

    def slow_verify(store, name, password):  # every check waits until the page has answered
        threads_used.add(threading.current_thread().name)
        waiting.append(loginlib._waiting)
        release.wait(WAIT_S)
        return verify(store, name, password)

    monkeypatch.setattr(accounts, "verify", slow_verify)
    n = 80
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(post_login, net.url, "alice", "nope-nope", f"203.0.113.{i}") for i in range(n)]
        with httpx.Client(base_url=net.url, timeout=WAIT_S, cookies=cookies) as alice:
            for _ in range(int(WAIT_S / 0.01)):  # bounded: until the pool is full and the queue overflows
                if len(threads_used) >= loginlib.HASH_THREADS and any(f.done() for f in futures):
                    break
                threading.Event().wait(0.01)
            page = alice.get("/api/stories")  # while every password check is stuck
        release.set()
        statuses = [f.result().status_code for f in futures]
    assert page.status_code == 200
    assert threads_used and all(t.startswith("batplots-login") for t in threads_used)
    assert len(threads_used) <= loginlib.HASH_THREADS
    assert set(statuses) == {401, 503} and max(waiting) <= loginlib.MAX_WAITING_LOGINS, (statuses, waiting)
    busy = next(f.result() for f in futures if f.result().status_code == 503)
    assert "Too many logins at once" in busy.text and busy.headers["retry-after"] == str(loginlib.LOGINS_BUSY_RETRY_S)
