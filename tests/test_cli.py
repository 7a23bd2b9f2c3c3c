"""The CLI end to end on a tiny model saved to disk (loaded through --base DIR)."""

import json

import pytest
from click.testing import CliRunner

from batplots.cli.main import main
from batplots.text import split_sentences


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests import tiny

    path = tmp_path_factory.mktemp("tiny-llama")
    tiny.trained_llama().save_pretrained(path)
    tiny.tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def runner():
    return CliRunner()


def model_args(tiny_dir):
    return ["--base", str(tiny_dir), "--adapter", "none", "--engine", "transformers"]


def test_generate_json(runner, tiny_dir):
    result = runner.invoke(main, ["generate", "Batman and Robin slide down the Batpoles.", "-n", "2",
                                  "--seed", "3", "--json", *model_args(tiny_dir)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prompt"] == "Batman and Robin slide down the Batpoles."
    assert len(data["sentences"]) == 2
    assert split_sentences(data["continuation"]) == data["sentences"]
    assert data["settings"]["seed"] == 3 and data["settings"]["sentences"] == 2
    assert data["seconds"] > 0


def test_generate_plain_prints_story_then_continuation(runner, tiny_dir):
    result = runner.invoke(main, ["generate", "The Joker laughs.", "--seed", "1", *model_args(tiny_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("The Joker laughs. ")
    assert len(split_sentences(result.stdout.strip())) == 3


@pytest.mark.parametrize("args,message", [
    (["-n", "0"], "sentences must be from 1 to 5"),
    (["-n", "9"], "sentences must be from 1 to 5"),
    (["--temperature", "5"], "temperature must be from 0.0 to 2.0"),
    (["--top-p", "0"], "top_p must be from 0.01 to 1.0"),
    (["--seed", "-4"], "seed must be from 0 to"),
])
def test_generate_rejects_bad_settings(runner, tiny_dir, args, message):
    result = runner.invoke(main, ["generate", "Go.", *args, *model_args(tiny_dir)])
    assert result.exit_code == 2
    assert message in result.output


def test_generate_rejects_empty_prompt(runner, tiny_dir):
    result = runner.invoke(main, ["generate", "   ", *model_args(tiny_dir)])
    assert result.exit_code == 2 and "prompt is empty" in result.output


def test_missing_base_directory_is_a_clear_error(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(main, ["generate", "Go.", "--base", str(tmp_path / "empty"), "--adapter", "none"])
    assert result.exit_code == 1 and "has no config.json" in result.output


def test_unknown_base_name_is_a_clear_error(runner):
    result = runner.invoke(main, ["generate", "Go.", "--base", "no-such-org/no-such-model", "--adapter", "none",
                                  "--engine", "transformers"])
    assert result.exit_code == 1 and "nothing is downloaded" in result.output


def test_missing_adapter_is_a_clear_error(runner, tiny_dir, tmp_path):
    result = runner.invoke(main, ["generate", "Go.", "--base", str(tiny_dir), "--engine", "transformers",
                                  "--adapter", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "--adapter" in result.output and "no such directory" in result.output


def test_help_lists_every_command(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("generate", "write"):
        assert command in result.output


# --- batplots write, driven by piped stdin ------------------------------------------------

def run_write(runner, tiny_dir, lines, *extra):
    return runner.invoke(main, ["write", "--seed", "5", *extra, *model_args(tiny_dir)],
                         input="\n".join(lines) + "\n")


def model_lines(output):
    return [line[len("model> "):] for line in output.splitlines() if line.startswith("model> ")]


def test_write_alternates_turns_and_saves_markdown(runner, tiny_dir, tmp_path):
    out = tmp_path / "episode.md"
    result = run_write(runner, tiny_dir, ["Batman and Robin slide down the Batpoles.", "The Joker laughs.",
                                          f"/save {out}"])
    assert result.exit_code == 0, result.output
    replies = model_lines(result.stdout)
    assert len(replies) == 2 and all(len(split_sentences(r)) == 2 for r in replies)
    md = out.read_text()
    assert md.startswith("# ")
    blocks = [line for line in md.splitlines() if line.startswith("**")]
    assert [b.split(":**")[0] for b in blocks] == ["**You", "**Model", "**You", "**Model"]
    assert blocks[0] == "**You:** Batman and Robin slide down the Batpoles."
    assert blocks[1] == f"**Model:** *{replies[0]}*"  # the web app's export: the model's passages in italics


def test_write_undo_and_retry(runner, tiny_dir, tmp_path):
    out = tmp_path / "s.md"
    result = run_write(runner, tiny_dir, ["Batman and Robin slide down the Batpoles.", "/retry", "/undo",
                                          "/show", f"/save {out}"])
    assert result.exit_code == 0, result.output
    first, retried = model_lines(result.stdout)
    assert first != retried  # a retry is a new sample
    md = out.read_text()
    assert "**Model:**" not in md and "**You:** Batman and Robin slide down the Batpoles." in md
    assert "Removed the model passage" in result.output


def test_write_settings_commands_and_errors(runner, tiny_dir):
    result = run_write(runner, tiny_dir, ["/sentences 1", "Robin waits.", "/sentences 9", "/temperature x",
                                          "/retry", "/bogus", "/undo", "/undo", "/undo", "/help"])
    assert result.exit_code == 0, result.output
    replies = model_lines(result.stdout)
    assert all(len(split_sentences(r)) == 1 for r in replies) and len(replies) == 2
    assert "sentences must be from 1 to 5" in result.output
    assert "temperature needs a number" in result.output
    assert "Unknown command /bogus" in result.output
    assert "Nothing to undo." in result.output
    assert "/retry" in result.output.split("Commands:")[-1]


def test_write_rejects_overlong_passage(runner, tiny_dir):
    result = run_write(runner, tiny_dir, ["x" * 2001, "/show"])
    assert "at most 2000" in result.output and not model_lines(result.output)


def test_write_empty_enter_lets_the_model_go_on(runner, tiny_dir, tmp_path):
    out = tmp_path / "s.md"
    result = run_write(runner, tiny_dir, ["", "Batman and Robin slide down the Batpoles.", "", f"/save {out}"])
    assert result.exit_code == 0, result.output
    assert "The story is empty" in result.output  # the first empty Enter: nothing to go on from
    assert len(model_lines(result.stdout)) == 2  # one after the passage, one more for the empty Enter
    blocks = [line.split(":**")[0] for line in out.read_text().splitlines() if line.startswith("**")]
    assert blocks == ["**You", "**Model", "**Model"]


def test_serve_refuses_a_bad_public_url_before_starting(runner):
    from batplots.web.app import check_public_url

    for bad, says in [("bats.example.org", "http:// or https://"), ("ftp://x.org", "http:// or https://"),
                      ("https://x.org/?a=1", "no ?query")]:
        result = runner.invoke(main, ["serve", "--public-url", bad, "--port", "0"])
        assert result.exit_code == 2 and says in result.output, result.output
    assert check_public_url(" https://bats.example.org/app/ ") == "https://bats.example.org/app"


def test_write_saves_markdown_escaped_for_markdown():
    from batplots.cli.write import Turn, to_markdown

    md = to_markdown([Turn("user", "Batman & Robin *sneak* <in>."), Turn("model", "The Joker laughs.")])
    assert "**You:** Batman \\& Robin \\*sneak\\* \\<in\\>." in md and "**Model:** *The Joker laughs.*" in md


def test_write_keeps_a_case_file_and_asks_for_beats(runner, tiny_dir, tmp_path):
    out = tmp_path / "case.md"
    result = run_write(runner, tiny_dir, ["The villainous Pendulum steals the great clock of Gotham City Hall.",
                                          "/case", "/case hideout the old clock tower", "/case bogus x",
                                          "/beat nap", "/beat deathtrap", "/outline", "/case hideout auto",
                                          f"/save {out}"])
    assert result.exit_code == 0, result.output
    assert "Villains: Pendulum" in result.output or "Villains: The Pendulum" in result.output
    assert "Hideout (yours): the old clock tower" in result.output
    assert "the case file has no field 'bogus'" in result.output
    assert "Usage: /beat NAME, one of: batphone, batcave, fight, deathtrap, escape" in result.output
    replies = model_lines(result.stdout)
    assert len(replies) == 2 and "same Bat-" in replies[1]  # the deathtrap turn ends on the cliffhanger
    assert "Beats so far:" in result.output and "Deathtrap!" in result.output
    md = out.read_text()
    assert "## Case file" in md and "**Villains:**" in md


def test_python_dash_m_batplots_cli_is_the_batplots_command():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "batplots.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Co-write new episodes" in proc.stdout
