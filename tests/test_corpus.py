"""The corpus reading API and its pure text rules (clean_plot, split_text_into_episodes)."""

import json

import pytest

from batplots.corpus.episodes import (
    CorpusError,
    Episode,
    clean_plot,
    corpus_sha256,
    read_corpus,
    split_text_into_episodes,
    write_jsonl,
    write_text,
)

# ---------------------------------------------------------------- clean_plot


@pytest.mark.parametrize("raw, clean", [
    ("[[Robin (1960s series)|Robin]] slides down.", "Robin slides down."),
    ("They reach the [[Batcave]].", "They reach the Batcave."),
    ("'''Batman''' and ''Robin'' run.", "Batman and Robin run."),
    ('He laughs.<ref name="x">{{cite web|url=http://a}}</ref> Then', "He laughs. Then"),
    ("He laughs.<ref name=x /> Then", "He laughs. Then"),
    ("The {{tl|{{nested|deep}}|x}}Joker laughs.", "The Joker laughs."),
    ("Cats &amp; bats &quot;fly&quot; &#8212; &lt;b&gt;", 'Cats & bats "fly" — <b>'),
    ("Double &amp;amp; escaped", "Double & escaped"),
    ("\u201cHoly bat!\u201d says Robin\u2019s pal \u2018Al\u2019.", "\"Holy bat!\" says Robin's pal 'Al'."),
    ("A <b>bold</b> <span class=\"x\">move</span>.", "A bold move."),
    ("One<br/>Two<br>Three", "One\nTwo\nThree"),
    ("  lots   of\tspace\u00a0here  ", "lots of space here"),
    ("Para one.\n\n\n  Para two.  \n", "Para one.\nPara two."),
    ("[[File:Bat.jpg|thumb|A [[bat]] pic]]Text [[Category:Episodes]]", "Text"),
    ("See [http://example.com the site] and [http://bare.example].", "See the site and."),
    ("Batman ({{actor}}) smiles {{ref}}. Then", "Batman smiles. Then"),
    ("Visible <!-- hidden note --> text", "Visible text"),
    ("{|class=wikitable\n|a||b\n|}\nAfter table.", "After table."),
    ("soft\u00adhy\u200bphen", "softhyphen"),
    ("", ""),
])
def test_clean_plot(raw, clean):
    assert clean_plot(raw) == clean


def test_clean_plot_is_idempotent():
    raw = "'''Batman''' meets [[Joker|the Joker]] &amp; \u201cfriends\u201d.<ref>x</ref>\n\nNext."
    once = clean_plot(raw)
    assert clean_plot(once) == once


# ---------------------------------------------------------------- split_text_into_episodes


def test_split_on_blank_lines_keeps_paragraphs():
    text = "First one. Still first.\nSecond paragraph of it.\n\nSecond episode.\n  \nThird episode!\n"
    assert split_text_into_episodes(text) == [
        "First one. Still first.\nSecond paragraph of it.", "Second episode.", "Third episode!"]


def test_split_run_on_text_at_double_space_gaps():
    text = "Batman wins. The Joker flees.  The Riddler returns! He leaves a clue.   Catwoman purrs."
    assert split_text_into_episodes(text) == [
        "Batman wins. The Joker flees.", "The Riddler returns! He leaves a clue.", "Catwoman purrs."]


def test_split_at_episode_openers_on_sentence_boundaries():
    text = ("The Joker laughs. Batman is trapped. Picking up from the last episode, Batman escapes. "
            "He wins. The story begins with the Riddler at the bank. In the former episode, Freeze won.")
    assert split_text_into_episodes(text) == [
        "The Joker laughs. Batman is trapped.",
        "Picking up from the last episode, Batman escapes. He wins.",
        "The story begins with the Riddler at the bank.",
        "In the former episode, Freeze won.",
    ]


def test_no_split_inside_a_sentence_or_dialogue():
    # A double space inside a sentence, and an opener inside quotes or mid-sentence, are not boundaries.
    text = ('Mr.  Freeze smiles. Robin says, "The story begins now." Batman nods, picking up from the floor.')
    assert split_text_into_episodes(text) == [
        'Mr. Freeze smiles. Robin says, "The story begins now." Batman nods, picking up from the floor.']


def test_split_text_without_markers_is_one_episode():
    assert split_text_into_episodes("One sentence. Another one. And an unfinished") == [
        "One sentence. Another one. And an unfinished"]
    assert split_text_into_episodes("   \n ") == []


def test_shared_corpus_splits_into_sensible_episodes(shared_corpus):
    episodes = read_corpus(shared_corpus)
    # The file joins 43 episode summaries (of the series' 120) with double-space gaps.
    assert len(episodes) == 43
    words = [len(ep.plot.split()) for ep in episodes]
    assert sum(words) == len(shared_corpus.read_text(encoding="utf-8").split())  # nothing lost
    assert min(words) >= 40 and max(words) <= 800
    assert all(ep.plot[-1] in ".!?…\")" for ep in episodes)  # every episode ends on a sentence
    openers = sum(ep.plot.startswith(("Picking up from", "The story begins")) for ep in episodes)
    assert openers == 4
    # Titles a fan recognises (the opening words and the villain), never "batman66 #1".
    assert episodes[2].title == "“Awaiting release from prison, the Penguin, the \"pompous…” (Penguin)"
    assert episodes[6].title.endswith("(Mr. Freeze)") and all("#" not in ep.title for ep in episodes)


# ---------------------------------------------------------------- read_corpus


def test_read_jsonl_round_trip(tmp_path):
    eps = [Episode(title="Hi Diddle Riddle", plot="The Riddler strikes.\nBatman answers.", season=1, episode=1,
                   air_date="January 12, 1966", villains=["Riddler"], url="http://w/Hi", revid=42,
                   fetched_at="2024-01-01T00:00:00Z"),
           Episode(title="Smack in the Middle", plot="Robin is saved.")]
    path = tmp_path / "eps.jsonl"
    write_jsonl(path, eps)
    assert read_corpus(path) == eps
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads(path.read_text().splitlines()[0])["villains"] == ["Riddler"]
    assert Episode.from_dict(eps[0].to_dict()) == eps[0]


def test_read_jsonl_detected_by_content_and_json_array(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text('\n{"plot": "A plot."}\n\n{"plot": "B plot.", "title": "B"}\n', encoding="utf-8")
    assert [(e.title, e.plot) for e in read_corpus(path)] == [("corpus #1", "A plot."), ("B", "B plot.")]
    arr = tmp_path / "c.json"
    arr.write_text('[{"plot": "X."}, {"plot": "Y.", "season": 2}]', encoding="utf-8")
    assert [(e.plot, e.season) for e in read_corpus(arr)] == [("X.", None), ("Y.", 2)]


def test_read_plain_text_with_blank_lines_and_bom(tmp_path):
    path = tmp_path / "plots.txt"
    path.write_bytes("\ufeffOne plot.\n\nTwo plot.\n".encode("utf-8"))
    assert [e.plot for e in read_corpus(path)] == ["One plot.", "Two plot."]


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"  \n\n ", "is empty"),
    (b"abc\x00def", "binary"),
    (b"caf\xc3\xa9 ok \xff bad", "byte offset 9"),
    (b'{"plot": "ok"}\n[1, 2]\n', "line 2: expected a JSON object"),
    (b'{"plot": "ok"}\n\n{"title": "x"}\n', "line 3: the record has no 'plot'"),
    (b'{"plot": "ok"}\n{"plot": "x", "season": "one"}\n', "line 2: 'season' must be an integer"),
    (b'{"plot": "ok"}\n{"plot": \n', "line 2: not valid JSON"),
    (b'{"plot": "  "}\n', "no 'plot'"),
    (b'{"plot": "x", "villains": "Joker"}\n', "'villains' must be a list"),
])
def test_read_corpus_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as info:
        read_corpus(path)
    assert str(path) in str(info.value)


def test_read_corpus_missing_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nope.jsonl")
    with pytest.raises(CorpusError, match="is not a file"):
        read_corpus(tmp_path)


def test_write_text_and_sha256(tmp_path):
    eps = [Episode(title="a", plot="First.\nStill first."), Episode(title="b", plot="Second.")]
    path = tmp_path / "out" / "corpus.txt"
    write_text(path, eps)
    assert path.read_text() == "First.\nStill first.\n\nSecond.\n"
    assert [e.plot for e in read_corpus(path)] == ["First.\nStill first.", "Second."]
    import hashlib
    assert corpus_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- statistics, provenance and the CLI


def test_compute_stats_per_season_and_extremes():
    from batplots.corpus.episodes import compute_stats, format_stats

    eps = [Episode("A", "one two three", season=1), Episode("B", "one", season=2),
           Episode("C", "one two three four five", season=1), Episode("D", "one two")]
    stats = compute_stats(eps, count_tokens=lambda text: 2 * len(text.split()))
    assert (stats["episodes"], stats["words"], stats["tokens"]) == (4, 11, 22)
    assert stats["per_season"] == {"1": {"episodes": 2, "words": 8, "tokens": 16},
                                   "2": {"episodes": 1, "words": 1, "tokens": 2},
                                   "unknown": {"episodes": 1, "words": 2, "tokens": 4}}
    assert stats["shortest"] == {"title": "B", "words": 1, "tokens": 2}
    assert stats["longest"] == {"title": "C", "words": 5, "tokens": 10}
    table = format_stats(stats)
    assert "season 1" in table and "no season" in table and "longest: C (5 words, 10 tokens)" in table
    assert "tokens" not in compute_stats(eps)


def test_provenance_records_wiki_revids_and_license():
    from batplots.corpus.episodes import provenance

    eps = [Episode("Hi", "x", url="https://batman.fandom.com/wiki/Hi", revid=7), Episode("Plain", "y")]
    prov = provenance(eps)
    assert prov["wikis"] == ["https://batman.fandom.com"] and prov["license"] == "CC BY-SA 3.0"
    assert prov["pages"] == [{"title": "Hi", "revid": 7, "url": "https://batman.fandom.com/wiki/Hi"}]
    assert "CC BY-SA 3.0" in prov["attribution"]
    assert provenance([Episode("Plain", "y")])["license"] is None


def test_cli_import_text_and_stats_on_the_shared_corpus(tmp_path, shared_corpus):
    from click.testing import CliRunner

    from batplots.cli.main import main
    from tests import tiny

    out = tmp_path / "batman66.jsonl"
    result = CliRunner().invoke(main, ["corpus", "import-text", str(shared_corpus), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"imported 43 episodes (14,548 words) from {shared_corpus}" in result.output
    episodes = read_corpus(out)
    assert len(episodes) == 43 and not any("\u2019" in ep.plot for ep in episodes)  # quotes straightened

    tok_dir = tmp_path / "tok"
    tiny.tokenizer().save_pretrained(tok_dir)
    result = CliRunner().invoke(main, ["corpus", "stats", str(out), "--tokenizer", str(tok_dir), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    tok = tiny.tokenizer()
    assert stats["tokens"] == sum(len(tok(ep.plot, add_special_tokens=False)["input_ids"]) for ep in episodes)
    assert (stats["episodes"], stats["words"]) == (43, 14548)
    assert stats["per_season"] == {"unknown": {k: stats[k] for k in ("episodes", "words", "tokens")}}
    assert (stats["shortest"]["words"], stats["longest"]["words"]) == (46, 735)

    result = CliRunner().invoke(main, ["corpus", "stats", str(shared_corpus), "--tokenizer", "none"])
    assert result.exit_code == 0 and "43" in result.output and "tokens" not in result.output


def test_cli_corpus_errors_are_clear(tmp_path):
    from click.testing import CliRunner

    from batplots.cli.main import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"plot": "fine"}\n{"title": "no plot"}\n')
    result = CliRunner().invoke(main, ["corpus", "stats", str(bad), "--tokenizer", "none"])
    assert result.exit_code == 1 and "line 2: the record has no 'plot'" in result.output
    result = CliRunner().invoke(main, ["corpus", "import-text", str(tmp_path / "nope.txt"), "--out", str(bad)])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert bad.read_text().startswith('{"plot": "fine"}')  # the output was not touched
    result = CliRunner().invoke(main, ["corpus", "stats", str(bad), "--tokenizer", str(tmp_path / "no-tok")])
    assert result.exit_code == 1


@pytest.mark.real_model
def test_default_tokenizer_is_the_embedded_base(real_home, shared_corpus):
    """Token counts use the embedded SmolLM2 tokenizer, read once and then kept on disk."""
    from batplots.corpus.episodes import compute_stats
    from batplots.model.weights import load_tokenizer

    tok = load_tokenizer(None)
    assert len(tok) == 49152  # SmolLM2's vocabulary
    stats = compute_stats(read_corpus(shared_corpus), lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
    assert stats["tokens"] == 19615  # the data README's "about 19.7k SmolLM2 tokens"
    assert any((real_home / d).rglob("tokenizer.json") for d in ("models", "tokenizers") if (real_home / d).is_dir())
    assert len(load_tokenizer(None)) == 49152  # now from disk


def test_atomic_writes_leave_no_temp_file_and_the_usual_mode(tmp_path):
    from batplots.files import atomic_write_text, default_file_mode

    import os

    target = tmp_path / "out" / "report.json"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "{}\n")
        atomic_write_text(target, '{"again": 1}\n')
        assert default_file_mode() == 0o644
    finally:
        os.umask(old)
    assert target.read_text() == '{"again": 1}\n' and [p.name for p in target.parent.iterdir()] == ["report.json"]
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
