"""The native-crash guard: a probe child that dies by a signal never takes batplots
with it. Probes are real child processes on real GGUF files; a crash is a real
signal (the $BATPLOTS_SELFCHECK_FAULT hook's, chosen per configuration), so the
fallback is exercised on every machine. Which signal a native crash raises differs
between CPUs (SIGSEGV, SIGILL in llama.cpp's AMX path on some Xeons), so every
report is checked against the signal the probe really died by."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from batplots.model.engine import EngineSpec, cpu, load_engine, selfcheck
from tests import tiny
from tests.test_web_e2e import CHROMIUM, CHROMIUM_ARGS, STEP_MS
from tests.tiny_gguf import write_gguf
from tests.webserver import make_server  # noqa: F401  (fixture: a real uvicorn server)

pytest.importorskip("llama_cpp")

AVX2_ONLY = {"model": "AMD EPYC (simulated)", "arch": "x86_64", "flags": ["avx", "f16c", "fma", "avx2"]}
AMX_CPU = {"model": "Intel Xeon (simulated)", "arch": "x86_64",
           "flags": ["avx2", "avx512f", "amx_tile", "amx_int8", "amx_bf16"]}
# Two different signals, so a report that swapped or hard-coded them would show.
BOTH_CRASH = "repack:SIGILL,no-repack:SIGSEGV"
CRASHED = re.compile(r"repacking (on|off): (SIG[A-Z0-9]+)")


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    """The CPU rule and the fault hook as each test sets them, whatever the caller's environment."""
    monkeypatch.delenv(cpu.REPACK_ENV, raising=False)
    monkeypatch.delenv(selfcheck.FAULT_ENV, raising=False)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tiny.trained_llama(), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def fate(attempt):
    return attempt.config, attempt.outcome, attempt.detail


def no_probe(cmd, config):
    raise AssertionError(f"probed again ({config}) although a verdict was cached")


def crash_report(attempts) -> str:
    """What notices and reasons must say: every configuration that crashed, with the
    signal its probe really died by, in the order tried."""
    return "; ".join(f"repacking {'on' if a.config == 'repack' else 'off'}: {a.detail}"
                     for a in attempts if a.outcome == "signal")


def saved_verdict(home, fault: str) -> selfcheck.Verdict:
    """The one verdict recorded under home for this $BATPLOTS_SELFCHECK_FAULT."""
    found = [selfcheck.Verdict.from_dict(v) for v in
             (json.loads(p.read_text()) for p in (home / selfcheck.SELFCHECK_DIR).glob("*.json"))
             if v["key"]["fault"] == fault]
    assert len(found) == 1, found
    return found[0]


def test_the_cpu_rule_turns_repacking_off_only_where_there_is_amx(monkeypatch):
    monkeypatch.delenv(cpu.REPACK_ENV, raising=False)
    assert cpu.default_repack(AVX2_ONLY["flags"])[0] is True
    repack, why = cpu.default_repack(AMX_CPU["flags"])
    assert repack is False and "AMX" in why and "20824" in why
    assert not re.search(r"SIG[A-Z]|segfault", why)  # the crash's signal differs between AMX CPUs
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


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGABRT],
                         ids=lambda sig: sig.name)
def test_a_child_killed_by_a_signal_is_reported_by_its_own_name(sig):
    crash = [sys.executable, "-c", f"import os, signal; os.kill(os.getpid(), {int(sig)})"]
    assert fate(selfcheck.run_probe(crash, "repack")) == ("repack", "signal", sig.name)


def test_a_child_that_fails_or_hangs_is_not_a_crash():
    failing = [sys.executable, "-c", "raise SystemExit('no such model file')"]
    assert fate(selfcheck.run_probe(failing, "repack")) == ("repack", "error", "no such model file")
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    assert fate(selfcheck.run_probe(hang, "repack", timeout=1)) == ("repack", "timeout", "no answer in 1 s")


def test_the_fault_hook_names_a_signal_per_configuration():
    assert selfcheck.fault_signal("repack", BOTH_CRASH) is signal.SIGILL
    assert selfcheck.fault_signal("no-repack", BOTH_CRASH) is signal.SIGSEGV
    assert selfcheck.fault_signal("no-repack", "repack") is None and selfcheck.fault_signal("repack", "") is None
    assert selfcheck.fault_signal("repack", " no-repack, repack ") is selfcheck.FAULT_DEFAULT_SIGNAL
    with pytest.raises(ValueError, match=r"'SIGNOPE' is not a signal name"):
        selfcheck.fault_signal("repack", "repack:SIGNOPE")


def test_a_sigill_probe_falls_back_to_repacking_off_and_is_cached(tiny_gguf, monkeypatch, batplots_home):
    monkeypatch.setattr(cpu, "cpu_info", lambda: AVX2_ONLY)  # a CPU where repacking is the default
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack:SIGILL")
    verdict = selfcheck.check(tiny_gguf)
    assert [fate(a) for a in verdict.attempts] == [
        ("repack", "signal", "SIGILL"), ("no-repack", "ok", f"{selfcheck.PROBE_TOKENS} tokens decoded")]
    assert (verdict.engine, verdict.repack) == ("llama", False)
    assert f"({crash_report(verdict.attempts)})" in verdict.notice and "SIGSEGV" not in verdict.notice
    assert "repacking off" in verdict.notice and "batplots doctor" in verdict.notice
    assert verdict.reason == "weight repacking off: repacking on: SIGILL"
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
    monkeypatch.setenv(selfcheck.FAULT_ENV, BOTH_CRASH)
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    with pytest.raises(Exception, match=r"--engine llama: llama.cpp crashed in every configuration: "
                                        r"repacking on: SIG[A-Z]+; repacking off: SIG[A-Z]+\. Use --engine transformers"
                       ) as raised:
        load_engine(EngineSpec(engine="llama", base=str(tiny_gguf), adapter="none"))
    verdict = selfcheck.cached(tiny_gguf)
    assert [fate(a) for a in verdict.attempts] == [("repack", "signal", "SIGILL"), ("no-repack", "signal", "SIGSEGV")]
    assert CRASHED.findall(str(raised.value)) == [("on", "SIGILL"), ("off", "SIGSEGV")]
    err = capfd.readouterr().err
    assert f"batplots: llama.cpp crashed in a test decode on this CPU ({crash_report(verdict.attempts)})" in err


def test_load_engine_falls_back_to_repacking_off_and_says_so(tiny_gguf, monkeypatch, capfd):
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack")
    engine = load_engine(EngineSpec(base=str(tiny_gguf), adapter="none"))
    try:
        assert engine.describe()["repack"] is False
        assert CRASHED.findall(engine.notice) == [("on", selfcheck.FAULT_DEFAULT_SIGNAL.name)]
        assert f"batplots: {engine.notice}" in capfd.readouterr().err
    finally:
        engine.close()


def test_healthz_and_the_page_say_when_the_engine_is_a_fallback(tiny_gguf, monkeypatch, make_server):
    monkeypatch.setenv(cpu.REPACK_ENV, "on")
    monkeypatch.setenv(selfcheck.FAULT_ENV, "repack:SIGILL")  # not SIGSEGV: the page must not assume one
    engine = load_engine(EngineSpec(base=str(tiny_gguf), adapter="none"))
    srv = make_server(engine=engine)
    health = srv.client.get("/healthz").json()
    assert health["status"] == "ready" and health["model"]["repack"] is False
    assert health["notice"] == engine.notice and CRASHED.findall(health["notice"]) == [("on", "SIGILL")]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(srv.url + "/")
            status = page.locator("#model-status")
            status.filter(has_text=health["notice"]).wait_for(timeout=STEP_MS)
            assert status.get_attribute("data-state") == "warning" and "SIGSEGV" not in status.inner_text()
        finally:
            browser.close()
    engine.close()


@pytest.mark.real_model
def test_generate_on_the_real_model_never_shows_a_bare_crash(real_home):
    """The main job with llama.cpp crashing in every configuration: the transformers
    engine writes the continuation, stderr says why, naming the signals the probes
    died by, exit status 0. Both crashes are the hook's, so the fallback is the same
    whether or not this CPU's llama.cpp would crash by itself."""
    env = {**os.environ, cpu.REPACK_ENV: "on", selfcheck.FAULT_ENV: BOTH_CRASH}
    proc = subprocess.run([sys.executable, "-m", "batplots.cli.main", "generate", "The Penguin opens an umbrella shop.",
                           "-n", "1", "--seed", "3", "--base", "fast", "--adapter", "none"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdict = saved_verdict(real_home, BOTH_CRASH)
    assert [fate(a) for a in verdict.attempts] == [("repack", "signal", "SIGILL"), ("no-repack", "signal", "SIGSEGV")]
    assert f"batplots: {verdict.notice}" in proc.stderr
    assert f"({crash_report(verdict.attempts)})" in verdict.notice
    assert "using the slower transformers engine" in proc.stderr
    assert proc.stdout.startswith("The Penguin opens an umbrella shop.") and len(proc.stdout) > 40


WRITE_RUNS = 3


@pytest.mark.real_model
def test_write_exits_cleanly_after_its_last_continuation(real_home):
    """The command's last continuation ends and the engine is dropped at exit while its
    scheduler may still be inside a decode step: before LlamaEngine closed itself first,
    `batplots write` died with SIGSEGV at exit in 6 of 6 runs on the real model."""
    for _ in range(WRITE_RUNS):
        proc = subprocess.run([sys.executable, "-m", "batplots.cli.main", "write", "--base", "fast", "--seed", "5"],
                              input="The Riddler leaves a riddle at the museum.\n", capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("model> ") and len(proc.stdout) > 40
