"""`batplots doctor`: the report a user pastes into a bug report, and its exit status."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from batplots import model as modellib
from batplots.cli import main
from batplots.engine import cpu, selfcheck

pytest.importorskip("llama_cpp")


def doctor(*args):
    return CliRunner().invoke(main, ["doctor", *args], catch_exceptions=False)


def test_doctor_reports_the_machine_and_says_the_self_check_has_not_run(batplots_home):
    result = doctor("--adapter", "none")
    assert result.exit_code == 0, result.output
    out = result.output
    info = cpu.cpu_info()
    assert f"cpu: {info['model']}" in out and "cpu flags: " + " ".join(info["flags"]) in out
    assert "llama.cpp: CPU : " in out and "AVX" in out  # llama.cpp's own system line
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
    assert eng["engine"] == "llama" and eng["repack"] is cpu.default_repack(rep["cpu"]["flags"])[0]
    assert [a["outcome"] for a in eng["selfcheck"]["attempts"]][-1] == "ok"
    assert rep["base_model"]["sha256"] == hashlib.sha256(modellib.embedded_gguf().read_bytes()).hexdigest()
    assert rep["memory"]["total_mb"] > 0 and rep["packages"]["llama-cpp-python"]
    again = doctor("--adapter", "none")
    assert "self-check (" in again.output and "tokens/s" in again.output


def test_doctor_shows_a_fallback_and_its_reason(batplots_home, monkeypatch):
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack,no-repack")
    result = doctor("--adapter", "none", "--check")
    assert result.exit_code == 0, result.output  # batplots still writes, on the transformers engine
    assert "engine: transformers (llama.cpp crashed in every configuration: repacking on: SIGSEGV; " \
           "repacking off: SIGSEGV)" in result.output
    assert "repack: signal, SIGSEGV; no-repack: signal, SIGSEGV" in result.output
    assert "notice: llama.cpp crashed in a test decode on this CPU" in result.output


def test_doctor_exits_1_and_names_the_problem(batplots_home):
    result = doctor("--adapter", "/no/such/adapter")
    assert result.exit_code == 1
    assert "PROBLEM: --adapter /no/such/adapter: no such directory" in result.output
