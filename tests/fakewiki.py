"""A real HTTP server on 127.0.0.1 playing a MediaWiki api.php for the scraper tests.

It answers action=parse (prop=wikitext|revid, redirects) and action=query
(prop=revisions, rvprop=ids, redirects) in formatversion 2, or 1 when asked (or
when the wiki is made "old" with formatversion=1, as servers that ignore the
parameter do). Faults are queued per title for parse requests and served in
order: "500", "429:<seconds>" (with Retry-After), "timeout" (answer only after
hang_seconds), "badjson", "maxlag", "hang" (like timeout, for interrupting a run).
Every request is logged with its time, parameters and User-Agent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Page:
    wikitext: str
    revid: int
    pageid: int


@dataclass
class Request:
    at: float
    params: dict
    user_agent: str

    @property
    def action(self) -> str:
        return self.params.get("action", "")


@dataclass
class FakeWiki:
    pages: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # from -> to
    formatversion: int | None = None  # None: answer in the version asked for
    hang_seconds: float = 1.0

    def __post_init__(self):
        self._pages: dict[str, Page] = {}
        for n, (title, text) in enumerate(self.pages.items(), 1):
            self._pages[title] = Page(text, revid=1000 + n, pageid=n)
        for source in self.redirects:
            self._pages.setdefault(source, Page(f"#REDIRECT [[{self.redirects[source]}]]", revid=5000 + len(self._pages),
                                                pageid=500 + len(self._pages)))
        self.faults: dict[str, list[str]] = {}
        self.log: list[Request] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------ control

    def start(self) -> "FakeWiki":
        wiki = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                wiki._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def edit(self, title: str, wikitext: str) -> None:
        """A new revision of a page."""
        with self.lock:
            page = self._pages[title]
            self._pages[title] = Page(wikitext, revid=page.revid + 100, pageid=page.pageid)

    def requests(self, action: str | None = None, title: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.log if (action is None or r.action == action)
                    and (title is None or r.params.get("page") == title)]

    def parsed_titles(self) -> list[str]:
        return [r.params["page"] for r in self.requests("parse")]

    # ------------------------------------------------------------ answers

    def _resolve(self, title: str) -> tuple[str, list[dict]]:
        """One redirect hop, as MediaWiki does for redirects=1."""
        if title in self.redirects:
            return self.redirects[title], [{"from": title, "to": self.redirects[title]}]
        return title, []

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.log.append(Request(time.monotonic(), params, handler.headers.get("User-Agent", "")))
            fault = None
            if params.get("action") == "parse" and self.faults.get(params.get("page", "")):
                fault = self.faults[params["page"]].pop(0)
        if url.path != "/api.php":
            return self._send(handler, 404, b"not found", "text/plain")
        if fault in ("timeout", "hang"):
            time.sleep(self.hang_seconds)
        elif fault == "500":
            return self._send(handler, 500, b"<html>Internal error</html>", "text/html")
        elif fault and fault.startswith("429:"):
            return self._send(handler, 429, b"slow down", "text/plain", {"Retry-After": fault[4:]})
        elif fault == "badjson":
            return self._send(handler, 200, b'{"parse": {"title": "trunc', "application/json")
        elif fault == "maxlag":
            body = {"error": {"code": "maxlag", "info": "Waiting for a database server: 7 seconds lagged."}}
            return self._send(handler, 200, json.dumps(body).encode(), "application/json", {"Retry-After": "0"})
        version = self.formatversion or int(params.get("formatversion", "1"))
        if params.get("action") == "parse":
            body = self._parse(params, version)
        elif params.get("action") == "query":
            body = self._query(params, version)
        else:
            body = {"error": {"code": "badvalue", "info": "Unrecognized value for parameter \"action\"."}}
        self._send(handler, 200, json.dumps(body).encode("utf-8"), "application/json")

    def _parse(self, params: dict, version: int) -> dict:
        title = params.get("page", "")
        hops: list[dict] = []
        if params.get("redirects"):
            title, hops = self._resolve(title)
        with self.lock:
            page = self._pages.get(title)
        if page is None:
            return {"error": {"code": "missingtitle", "info": "The page you specified doesn't exist."}}
        body = {"title": title, "pageid": page.pageid, "revid": page.revid,
                "wikitext": page.wikitext if version == 2 else {"*": page.wikitext}}
        if hops:
            body["redirects"] = hops
        return {"parse": body}

    def _query(self, params: dict, version: int) -> dict:
        titles = [t for t in params.get("titles", "").split("|") if t]
        query: dict = {}
        redirects, pages = [], []
        for title in titles:
            target, hops = self._resolve(title) if params.get("redirects") else (title, [])
            redirects += hops
            with self.lock:
                page = self._pages.get(target)
            if page is None:
                pages.append({"ns": 0, "title": target, "missing": True if version == 2 else ""})
            else:
                pages.append({"pageid": page.pageid, "ns": 0, "title": target,
                              "revisions": [{"revid": page.revid, "parentid": page.revid - 1}]})
        if redirects:
            query["redirects"] = redirects
        if version == 2:
            query["pages"] = pages
        else:
            query["pages"] = {str(p.get("pageid", -1 - i)): p for i, p in enumerate(pages)}
        return {"batchcomplete": True if version == 2 else "", "query": query}

    @staticmethod
    def _send(handler, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer
