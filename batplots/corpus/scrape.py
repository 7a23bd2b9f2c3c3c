"""A polite, resumable MediaWiki scraper: episode plots from the Batman Wiki into a corpus.

Flow: fetch the list page, read the episode titles from its links (wikitext.list_entries),
ask the wiki for every title's current revision id in cheap batches
(action=query&prop=revisions&rvprop=ids, TITLES_PER_QUERY titles a request), then fetch
with action=parse only the pages whose revision is not already in the cache.

The cache: one JSON file per requested title (the parse answer: resolved title, revid,
wikitext, fetch time), written atomically as soon as it arrives. That makes a run
resumable after Ctrl-C or a crash (the next run re-fetches only what is not cached), a
re-run cheap (1 + ceil(N/50) revision checks, no page fetches when nothing changed) and
`--offline` possible (everything from the cache, no request at all). The outputs are
written atomically once at the end, so they always hold one whole run.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from batplots.corpus.episodes import Episode, write_jsonl, write_text
from batplots.files import atomic_write_text
from batplots.corpus.wikitext import DEFAULT_SECTIONS, list_entries, normalize_title, read_episode_page

DEFAULT_WIKI = "https://batman.fandom.com"
DEFAULT_LIST_PAGE = "List of Batman (1960s series) Episodes"
DEFAULT_DELAY = 1.0  # seconds between requests: one request a second is polite for a fan wiki
MAX_DELAY = 600.0
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
DEFAULT_RETRIES = 5  # extra attempts per request after the first
MAX_RETRIES = 10
DEFAULT_BACKOFF = 1.0  # first retry wait; doubles each retry
MAX_BACKOFF = 60.0  # no single wait (backoff or Retry-After) is longer
MAXLAG = 5  # ask the wiki to refuse us when its replicas lag more than this (seconds)
MAX_TITLES = 1000  # the series has 120 episodes; a list linking far more is the wrong page
TITLES_PER_QUERY = 50  # MediaWiki's limit of titles per query for ordinary clients
CONTACT_PLACEHOLDER = "contact: set --contact to your email or URL"
URL_SAFE = ":/()!,'"  # kept as is in page URLs, as MediaWiki writes them
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ScrapeError(RuntimeError):
    """The run cannot go on (e.g. the list page cannot be had); the message says why."""


class FetchError(RuntimeError):
    """A request failed after all its retries."""


class MalformedResponse(FetchError):
    """The wiki answered, but not with the JSON the API promises."""


class ApiError(RuntimeError):
    """The API answered with an error object (e.g. missingtitle)."""

    def __init__(self, code: str, info: str):
        super().__init__(f"{code}: {info}")
        self.code = code
        self.info = info


def user_agent(contact: str | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("batplots")
    except PackageNotFoundError:
        ver = "dev"
    return (f"batplots/{ver} (corpus scraper for a story co-writing tool; "
            f"{'contact: ' + contact if contact else CONTACT_PLACEHOLDER}) httpx/{httpx.__version__}")


def api_url(wiki: str) -> str:
    wiki = wiki.rstrip("/")
    return wiki if wiki.endswith("/api.php") else wiki + "/api.php"


def page_url(wiki: str, title: str) -> str:
    base = wiki.rstrip("/").removesuffix("/api.php")
    return f"{base}/wiki/{quote(title.replace(' ', '_'), safe=URL_SAFE)}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


@dataclass
class ParsedPage:
    title: str  # the page's own title after redirects
    revid: int | None
    wikitext: str
    redirected_from: str | None = None
    fetched_at: str = field(default_factory=_now)


class WikiClient:
    """The MediaWiki Action API over httpx: rate limited, maxlag, bounded retries with backoff."""

    def __init__(self, wiki: str, delay: float = DEFAULT_DELAY, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF, contact: str | None = None):
        self.url = api_url(wiki)
        self.delay = delay
        self.retries = retries
        self.backoff = backoff
        self.requests = 0
        self.waits: list[tuple[str, float]] = []  # (why, seconds): what the user waited for
        self._last = float("-inf")
        self._http = httpx.Client(timeout=timeout, follow_redirects=True,
                                  headers={"User-Agent": user_agent(contact), "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def _wait_turn(self) -> None:
        """One request per `delay` seconds, counted from the start of the previous one."""
        pause = self._last + self.delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._last = time.monotonic()

    def _back_off(self, attempt: int, why: str, retry_after: float | None) -> None:
        seconds = retry_after if retry_after is not None else self.backoff * 2 ** attempt
        seconds = min(MAX_BACKOFF, seconds)
        self.waits.append((why, seconds))
        time.sleep(seconds)

    def api(self, params: dict) -> dict:
        """GET api.php with params; returns the decoded JSON. Retries timeouts, connection
        errors, 429/5xx, maxlag and unreadable JSON; raises FetchError, MalformedResponse or ApiError."""
        query = {"format": "json", "maxlag": MAXLAG, **params}
        problem = "no attempt"
        malformed = False
        retry_after = None  # the last failed attempt's Retry-After, if it sent one
        for attempt in range(self.retries + 1):
            if attempt:
                self._back_off(attempt - 1, problem, retry_after)
            retry_after = None
            self._wait_turn()
            self.requests += 1
            try:
                response = self._http.get(self.url, params=query)
            except httpx.TimeoutException as exc:
                problem, malformed = f"timeout ({type(exc).__name__})", False
                continue
            except httpx.TransportError as exc:
                problem, malformed = f"connection error ({exc})", False
                continue
            if response.status_code in RETRY_STATUSES:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                problem, malformed = f"HTTP {response.status_code}", False
                continue
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} from {self.url}")
            try:
                data = response.json()
            except ValueError:
                problem, malformed = f"invalid JSON ({response.text[:60]!r})", True
                continue
            if not isinstance(data, dict):
                problem, malformed = f"a JSON {type(data).__name__} instead of an object", True
                continue
            error = data.get("error")
            if isinstance(error, dict):
                code = str(error.get("code", "unknown"))
                if code == "maxlag":
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    problem, malformed = "the wiki's replicas lag (maxlag)", False
                    continue
                info = error.get("info", error.get("*", ""))
                raise ApiError(code, str(info))
            return data
        tries = self.retries + 1
        if malformed:
            raise MalformedResponse(f"{problem} after {tries} tries")
        raise FetchError(f"{problem} after {tries} tries")

    def parse(self, title: str) -> ParsedPage:
        """A page's wikitext and revision id (redirects followed); formatversion 1 or 2 answers."""
        data = self.api({"action": "parse", "page": title, "prop": "wikitext|revid", "redirects": 1,
                         "formatversion": 2})
        parse = data.get("parse")
        if not isinstance(parse, dict):
            raise MalformedResponse(f"no 'parse' object in the answer (keys: {sorted(data)})")
        wikitext = parse.get("wikitext")
        if isinstance(wikitext, dict):  # formatversion 1: {"*": "..."}
            wikitext = wikitext.get("*")
        if not isinstance(wikitext, str):
            raise MalformedResponse("the answer has no wikitext")
        revid = parse.get("revid")
        redirects = parse.get("redirects") or []
        return ParsedPage(title=str(parse.get("title") or title),
                          revid=revid if isinstance(revid, int) else None, wikitext=wikitext,
                          redirected_from=redirects[0].get("from") if redirects and isinstance(redirects[0], dict)
                          else None)

    def revisions(self, titles: list[str]) -> dict[str, tuple[str, int | None]]:
        """For each title: (the page title it resolves to, its current revid or None when missing)."""
        found: dict[str, tuple[str, int | None]] = {}
        for start in range(0, len(titles), TITLES_PER_QUERY):
            batch = titles[start:start + TITLES_PER_QUERY]
            data = self.api({"action": "query", "prop": "revisions", "rvprop": "ids", "redirects": 1,
                             "titles": "|".join(batch), "formatversion": 2})
            query = data.get("query")
            if not isinstance(query, dict):
                raise MalformedResponse("no 'query' object in the revisions answer")
            hops = {}
            for key in ("normalized", "redirects"):
                for hop in query.get(key) or []:
                    hops[hop.get("from")] = hop.get("to")
            pages = query.get("pages") or []
            if isinstance(pages, dict):  # formatversion 1: keyed by page id ("-1" for missing pages)
                pages = list(pages.values())
            current = {}
            for page in pages:
                revs = page.get("revisions") or []
                missing = "missing" in page or "invalid" in page or not revs
                current[page.get("title")] = None if missing else revs[0].get("revid")
            for title in batch:
                resolved, seen = title, set()
                while resolved in hops and resolved not in seen:
                    seen.add(resolved)
                    resolved = hops[resolved]
                if resolved in current:
                    found[title] = (resolved, current[resolved])
        return found


class PageCache:
    """Parse answers on disk, one JSON file per requested title, written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, title: str) -> Path:
        return self.root / "pages" / (hashlib.sha256(title.encode("utf-8")).hexdigest()[:32] + ".json")

    def get(self, title: str) -> ParsedPage | None:
        path = self.path(title)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("request_title") != title or not isinstance(data.get("wikitext"), str):
                return None
            return ParsedPage(title=data["title"], revid=data.get("revid"), wikitext=data["wikitext"],
                              redirected_from=data.get("redirected_from"), fetched_at=data.get("fetched_at", ""))
        except (OSError, ValueError, KeyError, AttributeError):
            return None  # absent or unreadable: fetch it again

    def put(self, title: str, page: ParsedPage) -> None:
        record = {"request_title": title, "title": page.title, "revid": page.revid,
                  "redirected_from": page.redirected_from, "fetched_at": page.fetched_at,
                  "wikitext": page.wikitext}
        atomic_write_text(self.path(title), json.dumps(record, ensure_ascii=False))


    def revisions_path(self) -> Path:
        return self.root / "revisions.json"

    def load_revisions(self) -> dict[str, tuple[str, int | None]]:
        """The last revision check (title -> (resolved title, revid or None when missing)), so
        --offline skips the same titles for the same reasons as the online run did."""
        try:
            data = json.loads(self.revisions_path().read_text(encoding="utf-8"))
            return {title: (str(pair[0]), pair[1]) for title, pair in data.items()}
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            return {}

    def save_revisions(self, revs: dict[str, tuple[str, int | None]]) -> None:
        merged = {**self.load_revisions(), **revs}
        atomic_write_text(self.revisions_path(), json.dumps({t: list(p) for t, p in merged.items()},
                                                            ensure_ascii=False))


def default_cache_dir(wiki: str) -> Path:
    from batplots.files import home

    host = urlsplit(wiki if "//" in wiki else "https://" + wiki).netloc or "wiki"
    return home() / "scrape-cache" / host.replace(":", "_")


@dataclass
class ScrapeResult:
    episodes: list[Episode] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)
    fetched: int = 0  # pages fetched with action=parse
    from_cache: int = 0
    requests: int = 0  # HTTP requests sent (retries included)
    titles: int = 0


@dataclass
class Scraper:
    """One scrape run's configuration; `run()` does the work."""

    wiki: str = DEFAULT_WIKI
    list_page: str = DEFAULT_LIST_PAGE
    cache_dir: Path | None = None
    offline: bool = False
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    client: WikiClient | None = None
    progress: bool = True

    def __post_init__(self):
        self.cache = PageCache(self.cache_dir or default_cache_dir(self.wiki))
        if self.client is None and not self.offline:
            self.client = WikiClient(self.wiki)

    def _page(self, title: str, revid: int | None, known: bool) -> tuple[ParsedPage, bool]:
        """The page from the cache when its revision is current (or offline), else fetched and
        cached; returns (page, came_from_cache)."""
        cached = self.cache.get(title)
        if cached is not None and (self.offline or (known and cached.revid == revid)):
            return cached, True
        if self.offline:
            raise LookupError("not in the cache (--offline)")
        page = self.client.parse(title)
        self.cache.put(title, page)
        return page, False

    def run(self) -> ScrapeResult:
        result = ScrapeResult()
        list_title = normalize_title(self.list_page)
        revs: dict[str, tuple[str, int | None]] = {}
        try:
            if not self.offline:
                try:
                    revs = self.client.revisions([list_title])
                except (FetchError, ApiError) as exc:
                    print(f"warning: could not check the list page's revision ({exc}); fetching it", file=sys.stderr)
            if list_title in revs and revs[list_title][1] is None:
                raise ScrapeError(f"the wiki has no page {list_title!r}; pass the episode list's title with --list-page")
            try:
                listing, _ = self._page(list_title, *self._rev(revs, list_title))
            except LookupError:
                raise ScrapeError(f"the cache has no copy of the list page {list_title!r}; "
                                  "run once without --offline") from None
            except ApiError as exc:
                raise ScrapeError(f"the wiki refused the list page {list_title!r}: {exc}") from None
            except FetchError as exc:
                raise ScrapeError(f"could not fetch the list page {list_title!r} from {api_url(self.wiki)}: {exc}; "
                                  "check --wiki (the site whose api.php answers) or try again later") from None
            entries = list_entries(listing.wikitext, listing.title)
            if not entries:
                raise ScrapeError(f"the list page {listing.title!r} links no episode pages; "
                                  "pass the episode list's title with --list-page")
            if len(entries) > MAX_TITLES:
                raise ScrapeError(f"the list page {listing.title!r} links {len(entries)} pages; at most {MAX_TITLES} "
                                  "are scraped in one run: pass the episode list's title with --list-page")
            result.titles = len(entries)
            if self.offline:
                revs = self.cache.load_revisions()
            else:
                try:
                    revs = self.client.revisions([e.title for e in entries])
                    self.cache.save_revisions(revs)
                except (FetchError, ApiError) as exc:
                    print(f"warning: revision check failed ({exc}); fetching every page", file=sys.stderr)
                    revs = {}
            self._episodes(entries, revs, result)
        finally:
            if self.client is not None:
                result.requests = self.client.requests
        return result

    @staticmethod
    def _rev(revs: dict, title: str) -> tuple[int | None, bool]:
        return (revs[title][1], True) if title in revs else (None, False)

    def _episodes(self, entries, revs, result: ScrapeResult) -> None:
        from tqdm import tqdm

        written: dict[str, str] = {}  # resolved title -> the list title that gave it
        bar = tqdm(entries, desc="pages", unit="page", disable=not self.progress or None, file=sys.stderr)
        for entry in bar:
            title = entry.title
            if title in revs and revs[title][1] is None:
                result.skipped.append((title, "missing page (the wiki has no page with this title)"))
                continue
            resolved = revs.get(title, (None,))[0]
            if resolved in written and resolved != title:
                result.skipped.append((title, f"redirect to {resolved!r}, already written"))
                continue
            try:
                page, cached = self._page(title, *self._rev(revs, title))
            except LookupError as exc:
                result.skipped.append((title, str(exc)))
                continue
            except MalformedResponse as exc:
                result.skipped.append((title, f"malformed response: {exc}"))
                continue
            except ApiError as exc:
                if exc.code == "missingtitle":
                    result.skipped.append((title, "missing page (the wiki has no page with this title)"))
                else:
                    result.failed.append((title, f"API error {exc}"))
                continue
            except FetchError as exc:
                result.failed.append((title, str(exc)))
                continue
            result.from_cache += cached
            result.fetched += not cached
            if page.title in written:
                result.skipped.append((title, f"redirect to {page.title!r}, already written"))
                continue
            info = read_episode_page(page.wikitext, self.sections)
            if info.plot is None:
                result.skipped.append((title, info.skip_reason))
                continue
            written[page.title] = title
            result.episodes.append(Episode(
                title=page.title, plot=info.plot,
                season=info.season if info.season is not None else entry.season,
                episode=info.episode if info.episode is not None else entry.episode,
                air_date=info.air_date, villains=info.villains, url=page_url(self.wiki, page.title),
                revid=page.revid, fetched_at=page.fetched_at))
        bar.close()


def write_outputs(result: ScrapeResult, out: str | Path, text: str | Path | None) -> None:
    """The JSONL (and plain text) of a finished run, each written atomically."""
    write_jsonl(out, result.episodes)
    if text:
        write_text(text, result.episodes)


def summary(result: ScrapeResult, out: str | Path | None, text: str | Path | None) -> str:
    lines = [f"{result.titles} episode titles on the list page; requests sent: {result.requests}; "
             f"pages fetched: {result.fetched}, from the cache: {result.from_cache}"]
    where = f" to {out}" + (f" and {text}" if text else "") if out else ""
    lines.append(f"written: {len(result.episodes)} episodes{where}")
    lines.append(f"skipped: {len(result.skipped)}")
    lines += [f"  - {title}: {reason}" for title, reason in result.skipped]
    lines.append(f"failed: {len(result.failed)}" + (" (run again to retry them; the cache keeps the rest)"
                                                    if result.failed else ""))
    lines += [f"  - {title}: {reason}" for title, reason in result.failed]
    return "\n".join(lines)
