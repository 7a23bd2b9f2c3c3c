"""What this CPU is, and which llama.cpp settings are safe on it.

llama.cpp can repack weights into CPU-specific layouts ("extra buffer types"):
AMX tiles on Intel CPUs with AMX, interleaved blocks elsewhere. Its AMX matrix
multiply crashes on Sapphire Rapids class Xeons (ggml-org/llama.cpp#20824,
ollama/ollama#17205; measured here: `generate` and the suite crashed at the first
decode, with SIGSEGV on one such Xeon and SIGILL on another), so repacking is off
by default where the CPU has AMX and on elsewhere, where it can speed up some
quantised types. The self-check (selfcheck.py) guards against whatever this rule
does not foresee.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The flags that decide which kernels llama.cpp and torch run.
REPORTED_FLAGS = ("sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
                  "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
# No signal named: which one the crash raises differs between CPUs of the class.
AMX_CRASH = "ggml-org/llama.cpp#20824: llama.cpp's AMX kernels crash on this CPU class"
# on / off / auto (the rule below); the self-check still guards a forced "on".
REPACK_ENV = "BATPLOTS_REPACK"
REPACK_CHOICES = {"on": True, "off": False, "auto": None}


def cpu_info(cpuinfo: Path = CPUINFO) -> dict:
    """{"model", "arch", "flags"}: the CPU's name, architecture and the REPORTED_FLAGS it has.

    Read from /proc/cpuinfo where there is one (Linux); elsewhere flags are unknown (empty)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and model in ("unknown", "", platform.machine()):
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "arch": platform.machine(), "flags": [f for f in REPORTED_FLAGS if f in flags]}


def has_amx(flags) -> bool:
    return bool(AMX_FLAGS & set(flags))


def default_repack(flags) -> tuple[bool, str]:
    """(repack, why): whether llama.cpp may repack weights on a CPU with these flags.

    On x86 without AMX, repacking changes nothing for the shipped Q4_1 and Q8_0
    weights (llama.cpp repacks Q4_0, Q4_K, IQ4_NL there; Q8_0 only on ARM), so the
    rule costs no speed where it keeps llama.cpp's default."""
    value = os.environ.get(REPACK_ENV, "").strip().lower() or "auto"
    if value not in REPACK_CHOICES:
        from batplots.model.weights import ModelError

        raise ModelError(f"${REPACK_ENV} must be one of {', '.join(REPACK_CHOICES)}, got {value!r}")
    if REPACK_CHOICES[value] is not None:
        return REPACK_CHOICES[value], f"{value}: ${REPACK_ENV}={value}"
    if has_amx(flags):
        return False, f"off: the CPU has AMX ({AMX_CRASH})"
    return True, "on: llama.cpp's default (no AMX on this CPU)"


def llama_system_info() -> str:
    """llama.cpp's own line on the kernels it was built with and the CPU features it found."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
