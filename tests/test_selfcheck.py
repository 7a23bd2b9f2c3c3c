"""The native-crash guard: a probe child that dies by a signal never takes batplots
with it. Probes are real child processes on real GGUF files; a crash is a real
SIGSEGV (the $BATPLOTS_SELFCHECK_FAULT hook, or llama.cpp's own where this CPU
has one), so the fallback is exercised on every machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from batplots.engine import EngineSpec, cpu, load_engine, selfcheck
from tests import tiny
from tests.test_web_e2e import CHROMIUM, CHROMIUM_ARGS
from tests.tiny_gguf import write_gguf
from tests.webserver import make_server  # noqa: F401  (fixture: a real uvicorn server)

pytest.importorskip("llama_cpp")

AVX2_ONLY = {"model": "AMD EPYC (simulated)", "arch": "x86_64", "flags": ["avx", "f16c", "fma", "avx2"]}
AMX_CPU = {"model": "Intel Xeon (simulated)", "arch": "x86_64",
           "flags": ["avx2", "avx512f", "amx_tile", "amx_int8", "amx_bf16"]}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def fate(attempt):
    return attempt.config, attempt.outcome, attempt.detail


def no_probe(cmd, config):
    raise AssertionError(f"probed again ({config}) although a verdict was cached")


def test_the_cpu_rule_turns_repacking_off_only_where_there_is_amx(monkeypatch):
    monkeypatch.delenv(cpu.REPACK_ENV, raising=False)
    assert cpu.default_repack(AVX2_ONLY["flags"])[0] is True
    repack, why = cpu.default_repack(AMX_CPU["flags"])
    assert repack is False and "AMX" in why and "20824" in why
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    assert cpu.default_repack(AMX_CPU["flags"]) == (True, "on: $BATPLOTS_REPACK=on")
    monkeypatch.setenv(cpu.REPACK_ENV, "sometimes")
    with pytest.raises(Exception, match=r"\$BATPLOTS_REPACK must be one of on, off, auto, got 'sometimes'"):
        cpu.default_repack(AVX2_ONLY["flags"])


def test_cpu_info_reads_flags_and_model(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx avx2 amx_tile junk\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx avx2 amx_tile junk\n")
    info = cpu.cpu_info(fake)
    assert info["model"] == "Test CPU 9000" and info["flags"] == ["avx", "avx2", "amx_tile"]
    assert cpu.has_amx(info["flags"])
    assert cpu.cpu_info(tmp_path / "missing")["flags"] == []


def test_a_probe_decodes_a_real_gguf_in_a_child(tiny_gguf):
    attempt = selfcheck.run_probe(selfcheck.probe_command(tiny_gguf, None, False), "no-repack")
    assert attempt.outcome == "ok", attempt
    assert attempt.detail == f"{selfcheck.PROBE_TOKENS} tokens decoded" and attempt.tokens_per_s > 0


def test_a_child_killed_by_a_signal_is_reported_by_name():
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    assert fate(selfcheck.run_probe(crash, "repack")) == ("repack", "signal", "SIGSEGV")
    failing = [sys.executable, "-c", "raise SystemExit('no such model file')"]
    assert fate(selfcheck.run_probe(failing, "repack")) == ("repack", "error", "no such model file")
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    assert fate(selfcheck.run_probe(hang, "repack", timeout=1)) == ("repack", "timeout", "no answer in 1 s")


def test_a_segfaulting_probe_falls_back_to_repacking_off_and_is_cached(tiny_gguf, monkeypatch, batplots_home):
    monkeypatch.setattr(cpu, "cpu_info", lambda: AVX2_ONLY)  # a CPU where repacking is the default
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack")
    verdict = selfcheck.check(tiny_gguf)
    assert [fate(a) for a in verdict.attempts] == [
        ("repack", "signal", "SIGSEGV"), ("no-repack", "ok", f"{selfcheck.PROBE_TOKENS} tokens decoded")]
    assert (verdict.engine, verdict.repack) == ("llama", False)
    assert "SIGSEGV" in verdict.notice and "repacking off" in verdict.notice and "batplots doctor" in verdict.notice
    saved = list((batplots_home / selfcheck.SELFCHECK_DIR).glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["repack"] is False
    again = selfcheck.check(tiny_gguf, probe=no_probe)
    assert again.cached and (again.engine, again.repack, again.notice) == ("llama", False, verdict.notice)


def test_the_cpu_rule_needs_one_probe_where_it_holds(tiny_gguf, monkeypatch):
    monkeypatch.setattr(cpu, "cpu_info", lambda: AMX_CPU)
    verdict = selfcheck.check(tiny_gguf)
    assert [a.config for a in verdict.attempts] == ["no-repack"] and verdict.notice is None
    assert verdict.reason.startswith("weight repacking off: the CPU has AMX")


def test_a_hang_is_not_cached(tiny_gguf, batplots_home):
    def hung(cmd, config):
        return selfcheck.Attempt(config, "timeout", "no answer in 1 s", 1.0)

    verdict = selfcheck.check(tiny_gguf, probe=hung)
    assert verdict.engine == "llama" and verdict.notice is None  # the in-process load will say what is wrong
    assert not (batplots_home / selfcheck.SELFCHECK_DIR).exists()


def test_load_engine_survives_every_configuration_crashing(tiny_gguf, monkeypatch, capfd):
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack,no-repack")
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    with pytest.raises(Exception, match=r"--engine llama: llama.cpp crashed in every configuration: "
                                        r"repacking on: SIGSEGV; repacking off: SIGSEGV\. Use --engine transformers"):
        load_engine(EngineSpec(engine="llama", base=str(tiny_gguf), adapter="none"))
    assert "llama.cpp crashed in a test decode on this CPU" in capfd.readouterr().err


def test_load_engine_falls_back_to_repacking_off_and_says_so(tiny_gguf, monkeypatch, capfd):
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack")
    engine = load_engine(EngineSpec(base=str(tiny_gguf), adapter="none"))
    try:
        assert engine.describe()["repack"] is False and "repacking on: SIGSEGV" in engine.notice
        assert "batplots: llama.cpp crashed in a test decode" in capfd.readouterr().err
    finally:
        engine.close()


def test_healthz_and_the_page_say_when_the_engine_is_a_fallback(tiny_gguf, monkeypatch, make_server):
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack")
    engine = load_engine(EngineSpec(base=str(tiny_gguf), adapter="none"))
    srv = make_server(engine=engine)
    health = srv.client.get("/healthz").json()
    assert health["status"] == "ready" and health["model"]["repack"] is False
    assert "repacking on: SIGSEGV" in health["notice"]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(srv.url + "/")
            status = page.locator("#model-status")
            status.filter(has_text="SIGSEGV").wait_for(timeout=10_000)
            assert status.get_attribute("data-state") == "warning"
        finally:
            browser.close()
    engine.close()


@pytest.mark.real_model
def test_generate_on_the_real_model_never_shows_a_bare_segfault(real_home, monkeypatch):
    """The main job with llama.cpp crashing in every configuration: the transformers
    engine writes the continuation, stderr says why, exit status 0. Where this CPU's
    llama.cpp really crashes with repacking on (AMX), the first probe's SIGSEGV is real."""
    env = {**os.environ, cpu.REPACK_ENV: "on", selfcheck.FAULT_ENV: "no-repack"}
    if not cpu.has_amx(cpu.cpu_info()["flags"]):
        env[selfcheck.FAULT_ENV] = "repack,no-repack"
    proc = subprocess.run([sys.executable, "-m", "batplots.cli", "generate", "The Penguin opens an umbrella shop.",
                           "-n", "1", "--seed", "3", "--adapter", "none"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "repacking on: SIGSEGV; repacking off: SIGSEGV" in proc.stderr
    assert "using the slower transformers engine" in proc.stderr
    assert proc.stdout.startswith("The Penguin opens an umbrella shop.") and len(proc.stdout) > 40


WRITE_RUNS = 3


@pytest.mark.real_model
def test_write_exits_cleanly_after_its_last_continuation(real_home):
    """The command's last continuation ends and the engine is dropped at exit while its
    scheduler may still be inside a decode step: before LlamaEngine closed itself first,
    `batplots write` died with SIGSEGV at exit in 6 of 6 runs on the real model."""
    for _ in range(WRITE_RUNS):
        proc = subprocess.run([sys.executable, "-m", "batplots.cli", "write", "--seed", "5"],
                              input="The Riddler leaves a riddle at the museum.\n", capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("model> ") and len(proc.stdout) > 40
