"""The scraper against a real HTTP server on 127.0.0.1 playing MediaWiki's api.php (tests/fakewiki.py)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batplots.corpus import scrape as s
from batplots.cli.main import main
from batplots.corpus.episodes import read_corpus
from batplots.corpus.wikitext import list_entries, read_episode_page
from tests.fakewiki import FakeWiki

LIST = "List of Batman (1960s series) Episodes"
LIST_TEXT = """The '''1960s series''' ran for three seasons. See also [[Batman (1960s series)]].
[[File:Logo.png|thumb|The [[logo]]]]
== Season 1 ==
{| class="wikitable"
! No. !! Title !! Villain !! Air date
|-
| 1 || [[Hi Diddle Riddle]] || [[Riddler (1960s series)|Riddler]] || January 12, 1966
|-
| 2 || "[[Smack in the Middle]]" || [[Riddler (1960s series)|Riddler]] || January 13, 1966
|-
| 3 || [[Fine Feathered Finks]] || [[Penguin]] || January 19, 1966
|-
| 4 || [[The Penguin's a Jinx]] || [[Penguin]] || January 20, 1966
|-
| 5 || [[The Joker Is Wild]] || [[Joker]] || January 26, 1966
|-
| 6 || [[Batman Is Riled]] || [[Joker]] || January 27, 1966
|-
| 7 || [[Instant Freeze]] || [[Mr. Freeze]] || February 2, 1966
|-
| 8 || [[Hi Diddle Riddle (episode)|Hi Diddle Riddle]] || [[Riddler]] || repeat
|}
== Season Two ==
* [[Shoot a Crooked Arrow]] ([[Archer]])
* [[Walk the Straight and Narrow]]
* [[Batman (disambiguation)]]
* [[Zelda the Great]]
* [[Empty Page]]
* [[Missing Page]]
* [[Double Redirect]]
<!-- an editor's note: [[Not An Episode]] -->
[[Category:Episode lists]]
"""

HI_DIDDLE = """{{Episode infobox
| title = Hi Diddle Riddle
| image = [[File:Hi.jpg|250px]]
| season = 1
| episode = 1
| airdate = January 12, 1966<ref>{{cite web|url=http://tv.example|title=TV}}</ref>
| villain = [[Riddler (1960s series)|The Riddler]]<br />[[Molly (1960s series)|Molly]]
}}
'''Hi Diddle Riddle''' is the first episode of the [[Batman (1960s series)|1960s series]].

== Plot ==
The ''Riddler'' leaves a riddle in a cake at the [[Gotham City|Gotham]] World's Fair.<ref name="tv">Source</ref> \
Commissioner Gordon calls [[Batman (1960s series)|Batman]] on the {{Color|red|''Bat'' phone{{dagger}}}}.

[[File:Riddler.jpg|thumb|The [[Riddler]] laughs]]
Robin says &quot;Holy rats&quot; &amp; Batman&nbsp;agrees &mdash; it&#39;s a trap.
{| class="wikitable"
| Table cell || not prose
|}
=== Cliffhanger ===
Robin is strapped to a table.<!-- to be continued -->

== Cast ==
* [[Adam West]] as Batman
[[Category:Episodes]]
"""
HI_DIDDLE_PLOT = ("The Riddler leaves a riddle in a cake at the Gotham World's Fair. "
                  "Commissioner Gordon calls Batman on the.\n"
                  "Robin says \"Holy rats\" & Batman agrees — it's a trap.\n"
                  "Robin is strapped to a table.")


def simple(plot: str, extra: str = "") -> str:
    return f"Lead text.\n{extra}\n== Plot ==\n{plot}\n== Trivia ==\nNot plot.\n"


PAGES = {
    LIST: LIST_TEXT,
    "Hi Diddle Riddle": HI_DIDDLE,
    "Smack in the Middle": simple("Batman escapes the Riddler's trap."),
    "Fine Feathered Finks": simple("The Penguin sends umbrellas."),
    "The Penguin's a Jinx": simple("The Penguin is caught at last."),
    "The Joker Is Wild": simple("The Joker joins the Comedians Hall of Fame."),
    "Batman Is Riled": simple("The Joker has his own utility belt."),
    "Instant Freeze": "{{Episode infobox|season=1|episode=7}}\n== Cast ==\nGeorge Sanders as Mr. Freeze.\n",
    "Shoot a Crooked Arrow": "== Synopsis ==\nThe Archer robs the rich. He gives to the poor.\n",
    "Walk the Straight and Narrow": simple("The Archer is back.",
                                           "{{Infobox episode|air_date=September 8, 1966|villains=Archer, Crier Tuckerman}}"),
    "Batman (disambiguation)": "'''Batman''' may refer to:\n* [[Batman (1960s series)]]\n* [[Batman (film)]]\n{{Disambig}}\n",
    "Zelda the Great (episode)": simple("Zelda robs the same bank each April Fools' Day.", "{{Episode infobox|season=2}}"),
    "Empty Page": "",
    "Final Page": simple("Never reached: a double redirect is not followed."),
}
REDIRECTS = {
    "Hi Diddle Riddle (episode)": "Hi Diddle Riddle",
    "Zelda the Great": "Zelda the Great (episode)",
    "Double Redirect": "Middle Redirect",
    "Middle Redirect": "Final Page",
}
WRITTEN = ["Hi Diddle Riddle", "Smack in the Middle", "Fine Feathered Finks", "The Penguin's a Jinx",
           "The Joker Is Wild", "Shoot a Crooked Arrow", "Walk the Straight and Narrow", "Zelda the Great (episode)"]
SKIPPED = {
    "Batman Is Riled": "malformed response: invalid JSON",
    "Instant Freeze": "no Plot/Synopsis/Summary section",
    "Hi Diddle Riddle (episode)": "redirect to 'Hi Diddle Riddle', already written",
    "Batman (disambiguation)": "disambiguation page",
    "Empty Page": "empty page",
    "Missing Page": "missing page",
    "Double Redirect": "redirect to 'Final Page' that the wiki did not resolve",
}
RETRIES = 2  # so a title's faults beyond 3 make it fail or be skipped


def make_wiki(version=None) -> FakeWiki:
    wiki = FakeWiki(pages=dict(PAGES), redirects=dict(REDIRECTS), formatversion=version, hang_seconds=1.0)
    wiki.faults = {
        "Fine Feathered Finks": ["500"],
        "The Penguin's a Jinx": ["429:1"],
        "The Joker Is Wild": ["timeout"],
        "Smack in the Middle": ["maxlag"],
        "Batman Is Riled": ["badjson"] * (RETRIES + 1),
    }
    return wiki


@pytest.fixture
def wiki():
    with make_wiki() as w:
        yield w


def cli(tmp_path, wiki_url, *extra):
    args = ["scrape", "--wiki", wiki_url, "--list-page", LIST, "--out", str(tmp_path / "episodes.jsonl"),
            "--text", str(tmp_path / "corpus.txt"), "--cache", str(tmp_path / "cache"), "--delay", "0",
            "--retries", str(RETRIES), "--backoff", "0.01", "--timeout", "0.5", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def skipped_of(output: str) -> dict[str, str]:
    block = output.split("skipped:", 1)[1].split("failed:", 1)[0]
    return dict(re.findall(r"^  - (.+?): (.+)$", block, re.M))


def test_scrape_writes_records_field_by_field_and_reports_skips(tmp_path, wiki, monkeypatch):
    # Every wait as the client chose it (not timed, so any machine agrees), and its request pacing.
    waits, delays = [], set()
    back_off, wait_turn = s.WikiClient._back_off, s.WikiClient._wait_turn

    def recorded(self, attempt, why, retry_after):
        back_off(self, attempt, why, retry_after)
        waits.append(self.waits[-1])

    def paced(self):
        delays.add(self.delay)
        wait_turn(self)

    monkeypatch.setattr(s.WikiClient, "_back_off", recorded)
    monkeypatch.setattr(s.WikiClient, "_wait_turn", paced)
    result = cli(tmp_path, wiki.url)
    assert result.exit_code == 0, result.output
    episodes = read_corpus(tmp_path / "episodes.jsonl")
    assert [e.title for e in episodes] == WRITTEN

    hi = episodes[0]
    assert hi.plot == HI_DIDDLE_PLOT
    assert (hi.season, hi.episode, hi.air_date) == (1, 1, "January 12, 1966")
    assert hi.villains == ["The Riddler", "Molly"]
    assert hi.url == f"{wiki.url}/wiki/Hi_Diddle_Riddle"
    assert hi.revid == 1002
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", hi.fetched_at)

    by_title = {e.title: e for e in episodes}
    smack = by_title["Smack in the Middle"]  # no infobox: season/episode from the list's table
    assert (smack.season, smack.episode, smack.air_date, smack.villains) == (1, 2, None, [])
    assert smack.plot == "Batman escapes the Riddler's trap."
    arrow = by_title["Shoot a Crooked Arrow"]  # Synopsis heading; season from "Season Two", order in the list
    assert (arrow.plot, arrow.season, arrow.episode) == ("The Archer robs the rich. He gives to the poor.", 2, 1)
    walk = by_title["Walk the Straight and Narrow"]
    assert (walk.air_date, walk.villains, walk.season, walk.episode) == (
        "September 8, 1966", ["Archer", "Crier Tuckerman"], 2, 2)
    zelda = by_title["Zelda the Great (episode)"]  # followed redirect: the record names the real page
    assert (zelda.season, zelda.episode, zelda.url) == (2, 4, f"{wiki.url}/wiki/Zelda_the_Great_(episode)")
    assert by_title["The Joker Is Wild"].plot == "The Joker joins the Comedians Hall of Fame."

    skipped = skipped_of(result.output)
    assert set(skipped) == set(SKIPPED)
    for title, reason in SKIPPED.items():
        assert skipped[title].startswith(reason), (title, skipped[title])
    assert "written: 8 episodes" in result.output and "failed: 0" in result.output

    text = (tmp_path / "corpus.txt").read_text(encoding="utf-8")
    assert text.split("\n\n")[0] == HI_DIDDLE_PLOT and len(text.split("\n\n")) == 8
    assert [e.plot for e in read_corpus(tmp_path / "corpus.txt")] == [e.plot for e in episodes]

    # Politeness: every request names us and asks for maxlag; the 429's Retry-After was honoured.
    assert all(r.user_agent.startswith("batplots/") and "contact" in r.user_agent for r in wiki.log)
    assert all(r.params.get("maxlag") == str(s.MAXLAG) for r in wiki.log)
    jinx = wiki.requests("parse", "The Penguin's a Jinx")
    assert len(jinx) == 2 and jinx[1].at - jinx[0].at >= 1.0
    assert [len(wiki.requests("parse", t)) for t in ("Fine Feathered Finks", "The Joker Is Wild",
                                                      "Smack in the Middle", "Batman Is Riled")] == [2, 2, 2, 3]
    # Only what was asked for: --delay 0, the 429's Retry-After, maxlag's (0), the --backoff 0.01 doubling.
    assert delays == {0.0}
    assert sorted(seconds for _, seconds in waits) == [0.0, 0.01, 0.01, 0.01, 0.02, 1.0], waits


def test_rerun_fetches_only_what_changed_and_offline_needs_no_server(tmp_path):
    wiki = make_wiki().start()
    try:
        assert cli(tmp_path, wiki.url).exit_code == 0
        first = (tmp_path / "episodes.jsonl").read_bytes()

        # Re-run: only the revision checks (list page + one batch) and the page that was malformed.
        wiki.log.clear()
        result = cli(tmp_path, wiki.url)
        assert result.exit_code == 0, result.output
        assert wiki.parsed_titles() == ["Batman Is Riled"]
        assert len(wiki.requests("query")) == 2
        assert "Batman Is Riled" in [e.title for e in read_corpus(tmp_path / "episodes.jsonl")]

        # Nothing changed: no page fetched at all.
        wiki.log.clear()
        result = cli(tmp_path, wiki.url)
        assert wiki.parsed_titles() == [] and len(wiki.log) == 2
        assert "pages fetched: 0, from the cache: 13" in result.output
        second = (tmp_path / "episodes.jsonl").read_bytes()

        # One page edited: only it is fetched again, and its record changes.
        wiki.edit("Smack in the Middle", simple("Batman escapes a new trap."))
        wiki.log.clear()
        online = cli(tmp_path, wiki.url)
        assert wiki.parsed_titles() == ["Smack in the Middle"]
        smack = [e for e in read_corpus(tmp_path / "episodes.jsonl") if e.title == "Smack in the Middle"][0]
        assert (smack.plot, smack.revid) == ("Batman escapes a new trap.", 1103)
        latest = (tmp_path / "episodes.jsonl").read_bytes()
        url = wiki.url
    finally:
        wiki.stop()

    # --offline with the server gone: the same outputs from the cache alone.
    result = CliRunner().invoke(main, ["scrape", "--wiki", url, "--list-page", LIST, "--offline",
                                       "--out", str(tmp_path / "offline.jsonl"), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "offline.jsonl").read_bytes() == latest
    offline = read_corpus(tmp_path / "offline.jsonl")
    assert [e.title for e in offline] == WRITTEN[:5] + ["Batman Is Riled"] + WRITTEN[5:]
    assert "requests sent: 0; pages fetched: 0, from the cache: 13" in result.output
    # The same skips for the same reasons: the last revision check is kept in the cache too.
    assert skipped_of(result.output) == skipped_of(online.output) and len(skipped_of(result.output)) == 6
    # A page the cache lacks is skipped offline, never fetched.
    s.PageCache(tmp_path / "cache").path("Smack in the Middle").unlink()
    result = CliRunner().invoke(main, ["scrape", "--wiki", url, "--list-page", LIST, "--offline",
                                       "--out", str(tmp_path / "offline.jsonl"), "--cache", str(tmp_path / "cache")])
    assert skipped_of(result.output)["Smack in the Middle"] == "not in the cache (--offline)"
    assert "Smack in the Middle" not in [e.title for e in read_corpus(tmp_path / "offline.jsonl")]
    assert first != second  # the malformed page was filled in by the re-run


def test_formatversion_1_answers_give_the_same_records(tmp_path):
    with FakeWiki(pages=dict(PAGES), redirects=dict(REDIRECTS), formatversion=1) as old, \
            FakeWiki(pages=dict(PAGES), redirects=dict(REDIRECTS)) as new:
        assert cli(tmp_path / "v1", old.url).exit_code == 0
        assert cli(tmp_path / "v2", new.url).exit_code == 0
        assert all(json.loads(json.dumps(r.params)).get("formatversion") == "2" for r in new.log)

    def records(path):
        return [{k: v for k, v in e.to_dict().items() if k not in ("url", "fetched_at")} for e in read_corpus(path)]

    v1, v2 = records(tmp_path / "v1" / "episodes.jsonl"), records(tmp_path / "v2" / "episodes.jsonl")
    assert v1 == v2 and len(v1) == 9  # no faults here, so Batman Is Riled is written too


def test_failures_are_bounded_and_reported(tmp_path, wiki):
    wiki.faults = {"Fine Feathered Finks": ["500"] * 10, "The Joker Is Wild": ["timeout"] * 10}
    result = cli(tmp_path, wiki.url)
    assert result.exit_code == 1  # a page failed: the run says so, yet writes what it has
    assert "failed: 2" in result.output
    assert re.search(r"Fine Feathered Finks: HTTP 500 after 3 tries", result.output)
    assert re.search(r"The Joker Is Wild: timeout \(ReadTimeout\) after 3 tries", result.output)
    assert len(wiki.requests("parse", "Fine Feathered Finks")) == RETRIES + 1
    titles = [e.title for e in read_corpus(tmp_path / "episodes.jsonl")]
    assert "Fine Feathered Finks" not in titles and "Hi Diddle Riddle" in titles
    # The next run retries only those (they were never cached).
    wiki.faults.clear()
    wiki.log.clear()
    assert cli(tmp_path, wiki.url).exit_code == 0
    assert sorted(wiki.parsed_titles()) == ["Fine Feathered Finks", "The Joker Is Wild"]


def test_interrupted_run_resumes_without_duplicates(tmp_path):
    """Ctrl-C (a real SIGINT to a real process) in the middle of a page; the next run resumes."""
    with make_wiki() as wiki:
        wiki.faults = {"The Joker Is Wild": ["hang"]}
        wiki.hang_seconds = 5.0
        args = [sys.executable, "-m", "batplots.cli.main", "scrape", "--wiki", wiki.url, "--list-page", LIST,
                "--out", str(tmp_path / "episodes.jsonl"), "--cache", str(tmp_path / "cache"), "--delay", "0",
                "--timeout", "20"]
        # A runner started in the background (`cmd &`) ignores SIGINT, and children inherit
        # that; restore the default so the child's Python turns SIGINT into KeyboardInterrupt.
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[1], env=dict(os.environ),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 20
        while not wiki.requests("parse", "The Joker Is Wild") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wiki.requests("parse", "The Joker Is Wild"), proc.communicate(timeout=5)[0]
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=10)[0].decode()
        assert proc.returncode != 0 and "Aborted" in out
        assert not (tmp_path / "episodes.jsonl").exists()  # never a half-written output
        assert not list(tmp_path.rglob("*.tmp"))
        done_before = list(dict.fromkeys(wiki.parsed_titles()[1:-1]))  # after the list page, before the hang
        assert done_before == ["Hi Diddle Riddle", "Smack in the Middle", "Fine Feathered Finks",
                               "The Penguin's a Jinx"]

        wiki.log.clear()
        result = cli(tmp_path, wiki.url)
        assert result.exit_code == 0, result.output
        assert not set(wiki.parsed_titles()) & set(done_before)  # resumed: the cached pages were not fetched
        assert "The Joker Is Wild" in wiki.parsed_titles()
        titles = [e.title for e in read_corpus(tmp_path / "episodes.jsonl")]
        assert titles == WRITTEN[:5] + ["Batman Is Riled"] + WRITTEN[5:] and len(set(titles)) == len(titles)


def test_rate_limit_spaces_requests(wiki):
    client = s.WikiClient(wiki.url, delay=0.2, retries=0)
    try:
        for _ in range(3):
            client.revisions(["Hi Diddle Riddle"])
    finally:
        client.close()
    times = [r.at for r in wiki.log]
    # Measured where the requests arrive, so allow for scheduling jitter on a busy machine.
    assert len(times) == 3 and times[-1] - times[0] >= 0.38 and all(b - a >= 0.1 for a, b in zip(times, times[1:]))


def test_retry_after_header_forms():
    assert s.retry_after_seconds("7") == 7.0
    assert s.retry_after_seconds(None) is None and s.retry_after_seconds("soon") is None
    assert s.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def test_list_page_errors_are_clear(tmp_path, wiki):
    result = CliRunner().invoke(main, ["scrape", "--wiki", wiki.url, "--list-page", "No Such List", "--delay", "0",
                                       "--out", str(tmp_path / "e.jsonl"), "--cache", str(tmp_path / "c")])
    assert result.exit_code == 1 and "the wiki has no page 'No Such List'" in result.output
    result = CliRunner().invoke(main, ["scrape", "--wiki", wiki.url, "--list-page", "Instant Freeze", "--delay", "0",
                                       "--out", str(tmp_path / "e.jsonl"), "--cache", str(tmp_path / "c")])
    assert result.exit_code == 1 and "links no episode pages" in result.output
    result = CliRunner().invoke(main, ["scrape", "--offline", "--out", str(tmp_path / "e.jsonl"),
                                       "--cache", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "run once without --offline" in result.output
    for wrong in (wiki.url + "/w", "http://127.0.0.1:9"):  # no api.php there (404); nothing listening
        result = CliRunner().invoke(main, ["scrape", "--wiki", wrong, "--delay", "0", "--retries", "1",
                                           "--backoff", "0.01", "--out", str(tmp_path / "e.jsonl"),
                                           "--cache", str(tmp_path / "c")])
        assert result.exit_code == 1 and "could not fetch the list page" in result.output
        assert "check --wiki" in result.output
    assert not (tmp_path / "e.jsonl").exists()


def test_list_entries_from_tables_lists_and_templates():
    entries = list_entries(LIST_TEXT, LIST)
    assert [(e.title, e.season, e.episode) for e in entries[:3]] == [
        ("Hi Diddle Riddle", 1, 1), ("Smack in the Middle", 1, 2), ("Fine Feathered Finks", 1, 3)]
    assert entries[7].title == "Hi Diddle Riddle (episode)" and entries[8].season == 2
    assert "Not An Episode" not in [e.title for e in entries] and "Penguin" not in [e.title for e in entries]
    templated = "== Season 3 ==\n{{Episode list|EpisodeNumber=17|Title=[[Ring Around the Riddler]]}}\n" \
                "{{Episode list|Title=The Wail of the Siren}}"
    assert [(e.title, e.season, e.episode) for e in list_entries(templated)] == [
        ("Ring Around the Riddler", 3, 17), ("The Wail of the Siren", 3, 2)]


def test_read_episode_page_section_choice_and_disambiguation():
    page = "== Summary ==\nShort one.\n== Plot ==\nLong one.\n"
    assert read_episode_page(page).plot == "Long one."  # Plot is preferred over Summary
    assert read_episode_page(page, ("Summary",)).plot == "Short one."
    assert read_episode_page("== Plot ==\n{{stub}}\n").skip_reason == "the Plot/Synopsis/Summary section is empty"
    assert read_episode_page("A list.\n__DISAMBIG__").skip_reason == "disambiguation page"
    assert read_episode_page("== Plot summary ==\nIt works.").plot == "It works."
