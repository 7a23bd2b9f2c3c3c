"""The native-crash guard: a short decode in a child process before llama.cpp runs here.

A bug in native kernels (llama.cpp's AMX matrix multiply, an instruction the CPU
lacks in a wheel built elsewhere) kills the whole process with a signal: no
Python exception, no message, the server gone. So the first time an engine is
loaded on a machine (per llama.cpp build, CPU and model file) a child process
loads the same files and decodes a few tokens. If the child dies by a signal,
the next configuration is tried: repacking off, then the transformers engine.
The verdict is cached under $BATPLOTS_HOME/selfcheck, so later loads pay nothing;
`batplots doctor` shows it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from batplots import files
from batplots.model.engine import cpu

# A first load of a 135M model and 8 tokens take a few seconds; a busy or slow
# machine gets ample room before the probe counts as hung.
PROBE_TIMEOUT_SECONDS = 180
PROBE_TOKENS = 8
PROBE_TEXT = "Batman and Robin race to the Batmobile. The Joker"
# Bumped when the probe changes, so old verdicts are not trusted.
PROBE_VERSION = 1
# Test hook: comma-separated configuration names ("repack", "no-repack"), each with an
# optional signal ("repack:SIGILL"), whose probe kills itself with that signal, to
# exercise the fallback for real. A native crash's signal depends on the CPU (SIGSEGV,
# SIGILL in llama.cpp's AMX path on some Xeons), so tests choose one and check it is
# the one reported.
FAULT_ENV = "BATPLOTS_SELFCHECK_FAULT"
FAULT_DEFAULT_SIGNAL = signal.SIGSEGV
SELFCHECK_DIR = "selfcheck"


@dataclass(frozen=True)
class Attempt:
    """One probe: the configuration tried and how its child ended."""

    config: str  # "repack" or "no-repack"
    outcome: str  # "ok", "signal" (native crash), "timeout" or "error" (a Python error in the child)
    detail: str  # the signal's name, the error's last line, or the probe's speed
    seconds: float
    tokens_per_s: float | None = None


@dataclass
class Verdict:
    """Which engine and llama.cpp settings to use here, and why."""

    engine: str  # "llama" or "transformers"
    repack: bool | None  # llama.cpp weight repacking (None for transformers)
    reason: str
    attempts: list[Attempt] = field(default_factory=list)
    # One line for stderr, /healthz and the page when a fallback is in effect; None otherwise.
    notice: str | None = None
    key: dict = field(default_factory=dict)
    checked_at: str = ""
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Verdict":
        data = dict(data)
        data["attempts"] = [Attempt(**a) for a in data.get("attempts", [])]
        return cls(**data)


def config_name(repack: bool) -> str:
    return "repack" if repack else "no-repack"


def fault_signal(config: str, spec: str | None = None) -> signal.Signals | None:
    """The signal $BATPLOTS_SELFCHECK_FAULT (or spec) tells config's probe to die by; None if none."""
    spec = os.environ.get(FAULT_ENV, "") if spec is None else spec
    for entry in spec.split(","):
        name, _, sig = entry.strip().partition(":")
        if name != config:
            continue
        if not sig.strip():
            return FAULT_DEFAULT_SIGNAL
        try:
            return signal.Signals[sig.strip().upper()]
        except KeyError:
            raise ValueError(f"${FAULT_ENV}: {sig.strip()!r} is not a signal name (e.g. SIGSEGV, SIGILL)") from None
    return None


def _file_id(path: Path | None) -> dict | None:
    if path is None:
        return None
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _build_id() -> dict:
    """The llama.cpp build: llama-cpp-python's version and its shared library file."""
    import llama_cpp

    lib = getattr(llama_cpp.llama_cpp, "_lib", None)
    lib_path = Path(getattr(lib, "_name", "") or "")
    return {"llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
            "library": _file_id(lib_path) if lib_path.is_file() else None}


def cache_key(gguf: Path, lora: Path | None) -> dict:
    info = cpu.cpu_info()
    return {"probe": PROBE_VERSION, "build": _build_id(), "cpu": info["model"], "flags": info["flags"],
            "model": _file_id(gguf), "lora": _file_id(lora), "fault": os.environ.get(FAULT_ENV, ""),
            "repack_env": os.environ.get(cpu.REPACK_ENV, "")}


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return files.home() / SELFCHECK_DIR / f"{digest}.json"


def cached(gguf: Path, lora: Path | None = None) -> Verdict | None:
    """The recorded verdict for these files on this machine, or None if not checked yet."""
    return _read(cache_path(cache_key(gguf, lora)))


def _read(path: Path) -> Verdict | None:
    try:
        verdict = Verdict.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    verdict.cached = True
    return verdict


def probe_command(gguf: Path, lora: Path | None, repack: bool, tokens: int = PROBE_TOKENS) -> list[str]:
    cmd = [sys.executable, "-m", "batplots.model.engine.selfcheck", "--gguf", str(gguf), "--repack", str(int(repack)),
           "--tokens", str(tokens)]
    return cmd + (["--lora", str(lora)] if lora else [])


def run_probe(cmd: list[str], config: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Attempt:
    """Run one probe child and say how it ended; never raises for the child's fate."""
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Attempt(config, "timeout", f"no answer in {timeout:.0f} s", round(time.monotonic() - start, 2))
    seconds = round(time.monotonic() - start, 2)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return Attempt(config, "signal", name, seconds)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return Attempt(config, "error", lines[-1] if lines else f"exit status {proc.returncode}", seconds)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        speed = float(report["tokens_per_s"])
    except (ValueError, KeyError, IndexError, TypeError):
        return Attempt(config, "error", f"unreadable probe output: {proc.stdout[-200:]!r}", seconds)
    return Attempt(config, "ok", f"{report['tokens']} tokens decoded", seconds, round(speed, 1))


def check(gguf: Path, lora: Path | None = None, probe=run_probe) -> Verdict:
    """The verdict for running gguf (+ lora) with llama.cpp here: cached, or probed now.

    Tries the CPU's default repacking, then repacking off; if every child died by a
    signal, the transformers engine. A probe that failed for another reason (a
    Python error, a hang) is not a native crash: that configuration is used, and the
    ordinary load reports the error in-process; such verdicts are not cached."""
    key = cache_key(gguf, lora)
    path = cache_path(key)
    found = _read(path)
    if found is not None:
        return found
    flags = cpu.cpu_info()["flags"]
    first, why = cpu.default_repack(flags)
    ladder = [first] + ([False] if first else [])
    attempts: list[Attempt] = []
    verdict = None
    for repack in ladder:
        attempt = probe(probe_command(gguf, lora, repack), config_name(repack))
        attempts.append(attempt)
        if attempt.outcome != "signal":
            reason = f"weight repacking {why}" if repack == first else "weight repacking off: " + _crashes(attempts[:-1])
            verdict = Verdict("llama", repack, reason, attempts)
            break
    if verdict is None:
        verdict = Verdict("transformers", None, "llama.cpp crashed in every configuration: " + _crashes(attempts),
                          attempts)
    crashed = [a for a in attempts if a.outcome == "signal"]
    if crashed:
        verdict.notice = (f"llama.cpp crashed in a test decode on this CPU ({_crashes(crashed)}); "
                          + ("using it with weight repacking off" if verdict.engine == "llama"
                             else "using the slower transformers engine")
                          + ". `batplots doctor` has the details.")
    verdict.key = key
    verdict.checked_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if all(a.outcome in ("ok", "signal") for a in attempts):  # a hang or error may not recur: probe again next time
        from batplots.files import atomic_write_text

        atomic_write_text(path, json.dumps(verdict.to_dict(), indent=1) + "\n")
    return verdict


def _crashes(attempts: list[Attempt]) -> str:
    return "; ".join(f"repacking {'on' if a.config == 'repack' else 'off'}: {a.detail}" for a in attempts)


def _probe_main(argv: list[str] | None = None) -> int:
    """The child: load the files as the engine will and decode a few tokens."""
    parser = argparse.ArgumentParser(prog="python -m batplots.model.engine.selfcheck")
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--lora", type=Path)
    parser.add_argument("--repack", type=int, choices=(0, 1), required=True)
    parser.add_argument("--tokens", type=int, default=PROBE_TOKENS)
    args = parser.parse_args(argv)
    fault = fault_signal(config_name(bool(args.repack)))
    if fault is not None:
        # Before llama.cpp loads anything, so a real crash in loading on this CPU cannot
        # pre-empt it: the parent sees exactly the signal the test chose, on every host.
        if fault not in (signal.SIGKILL, signal.SIGSTOP):  # the only ones with no handler to reset
            signal.signal(fault, signal.SIG_DFL)  # e.g. SIGINT would otherwise be a KeyboardInterrupt
        os.kill(os.getpid(), fault)
    from batplots.model.engine.base import Settings
    from batplots.model.engine.llama_engine import LlamaEngine

    engine = LlamaEngine(args.gguf, args.lora, label="selfcheck", n_ctx=max(256, 4 * args.tokens), n_slots=1,
                         repack=bool(args.repack))
    ids = engine.encode(PROBE_TEXT)
    engine.logits(ids)  # the scoring path (one batch of many tokens) crashed too
    start = time.monotonic()
    settings = Settings(temperature=0.0, max_new_tokens=args.tokens, max_context=max(256, 4 * args.tokens))
    tokens = sum(1 for _ in engine.pieces(PROBE_TEXT, settings, seed=0, cancel=None))
    seconds = time.monotonic() - start
    engine.close()
    print(json.dumps({"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": tokens / max(seconds, 1e-6)}))
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main())
