"""`batplots doctor`: the report a user pastes into a bug report, and its exit status."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from batplots.model import weights as modellib
from batplots.cli.main import main
from batplots.model.engine import cpu, selfcheck

pytest.importorskip("llama_cpp")


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    """The CPU rule and the fault hook as each test sets them, whatever the caller's environment."""
    monkeypatch.delenv(cpu.REPACK_ENV, raising=False)
    monkeypatch.delenv(selfcheck.FAULT_ENV, raising=False)


def doctor(*args):
    """doctor on the 135M (the hashes below are its GGUF's), unless args name a base."""
    base = [] if "--base" in args else ["--base", "fast"]
    return CliRunner().invoke(main, ["doctor", *base, *args], catch_exceptions=False)


def test_doctor_reports_the_machine_and_says_the_self_check_has_not_run(batplots_home):
    result = doctor("--adapter", "none")
    assert result.exit_code == 0, result.output
    out = result.output
    info = cpu.cpu_info()
    assert f"cpu: {info['model']}" in out and "cpu flags: " + " ".join(info["flags"]) in out
    # llama.cpp's own system line; which features it lists depends on the CPU and the build.
    assert f"llama.cpp: {cpu.llama_system_info()}" in out and "llama.cpp: CPU : " in out
    assert f"BATPLOTS_HOME: {batplots_home}" in out
    assert "self-check: not run yet on this machine" in out and "batplots doctor --check" in out
    gguf = modellib.embedded_gguf()
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert f"file: {gguf} {gguf.stat().st_size} bytes sha256 {digest[:16]}" in out
    assert "copy guard: off" in out and "PROBLEM" not in out


def test_doctor_check_runs_the_self_check_once_and_shows_the_cached_verdict(batplots_home):
    result = doctor("--adapter", "none", "--check", "--json")
    assert result.exit_code == 0, result.output
    rep = json.loads(result.output)
    eng = rep["engine"]
    attempts = eng["selfcheck"]["attempts"]
    # The CPU rule's choice, unless this CPU's llama.cpp crashed with it: then repacking off.
    first = cpu.default_repack(rep["cpu"]["flags"])[0]
    ladder = [selfcheck.config_name(first)] + (["no-repack"] if first and attempts[0]["outcome"] == "signal" else [])
    assert [a["config"] for a in attempts] == ladder and attempts[-1]["outcome"] == "ok"
    assert eng["engine"] == "llama" and eng["repack"] is (first and len(attempts) == 1)
    assert rep["base_model"]["sha256"] == hashlib.sha256(modellib.embedded_gguf().read_bytes()).hexdigest()
    assert rep["memory"]["total_mb"] > 0 and rep["packages"]["llama-cpp-python"]
    again = doctor("--adapter", "none")
    assert "self-check (" in again.output and "tokens/s" in again.output


def test_doctor_shows_a_fallback_and_the_signals_that_really_happened(batplots_home, monkeypatch):
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    # Two different signals (SIGILL is what llama.cpp's AMX path raises on some Xeons),
    # so a report that assumed SIGSEGV or swapped the configurations would show.
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack:SIGILL,no-repack:SIGSEGV")
    result = doctor("--adapter", "none", "--check", "--json")
    assert result.exit_code == 0, result.output  # batplots still writes, on the transformers engine
    attempts = json.loads(result.output)["engine"]["selfcheck"]["attempts"]
    assert [(a["config"], a["outcome"], a["detail"]) for a in attempts] == [
        ("repack", "signal", "SIGILL"), ("no-repack", "signal", "SIGSEGV")]
    text = doctor("--adapter", "none").output  # the recorded verdict, as a bug report shows it
    crashes = "repacking on: SIGILL; repacking off: SIGSEGV"
    assert f"engine: transformers (llama.cpp crashed in every configuration: {crashes})" in text
    assert "repack: signal, SIGILL; no-repack: signal, SIGSEGV" in text
    assert f"notice: llama.cpp crashed in a test decode on this CPU ({crashes}); using the slower" in text


def test_doctor_exits_1_and_names_the_problem(batplots_home):
    result = doctor("--adapter", "/no/such/adapter")
    assert result.exit_code == 1
    assert "PROBLEM: --adapter /no/such/adapter: no such directory" in result.output
