"""Continuation engines. `load_engine` builds the one the CLI and web app ask for."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from batplots.model.engine.base import (  # noqa: F401  (re-exported API)
    Cancelled,
    Continuation,
    Engine,
    EngineError,
    Rewind,
    Settings,
    SettingsError,
)
from batplots.model.engine import selfcheck

# auto = llama (fast, llama.cpp) where llama-cpp-python is installed and the base is a
# GGUF, else transformers; openai = a remote OpenAI-compatible completions server.
ENGINES = ("auto", "llama", "transformers", "openai")


@dataclass(frozen=True)
class EngineSpec:
    """Which engine to load, as the CLI's --engine/--base/--adapter/--base-url/--model options say."""

    engine: str = "auto"  # one of ENGINES
    base: str | None = None  # None = the default base (batplots.model.bases), or a name, .gguf or HF dir
    adapter: str | None = None  # None = the shipped default adapter, "none" = bare base
    base_url: str | None = None  # --engine openai: the server's URL, e.g. http://gpu1:8000/v1
    model: str | None = None  # --engine openai: the model name the server serves


def load_engine(spec: EngineSpec) -> Engine:
    """Load the engine that spec names (the model is loaded once, here): a bare
    backend; the Writer (batplots.story.writer.open_writer) adds the copy guard and lore."""
    from batplots.model import weights as modellib

    if spec.engine not in ENGINES:
        raise modellib.ModelError(f"unknown engine {spec.engine!r}; choose one of: {', '.join(ENGINES)}")
    if spec.engine != "openai" and (spec.base_url or spec.model):
        raise modellib.ModelError("--base-url and --model are for --engine openai (a remote server)")
    adapter_dir = modellib.resolve_adapter(spec.adapter, spec.base)
    if spec.engine == "openai":
        from batplots.model.engine.openai_engine import OpenAIEngine

        if not spec.base_url or not spec.model:
            raise modellib.ModelError("--engine openai needs --base-url URL (e.g. http://127.0.0.1:8000/v1) "
                                      "and --model NAME (a model the server lists at /v1/models)")
        return OpenAIEngine(spec.base_url, spec.model)
    return _load_local(spec, adapter_dir)


def _load_local(spec: EngineSpec, adapter_dir) -> Engine:
    from batplots.model import bases
    from batplots.model import weights as modellib
    from batplots.model.engine import llama_engine

    gguf = llama_engine.resolve_base(spec.base)
    notice = None
    if spec.engine == "llama" or (spec.engine == "auto" and gguf is not None and llama_engine.available()):
        if not llama_engine.available():
            raise modellib.ModelError("--engine llama needs llama-cpp-python: `pip install llama-cpp-python` "
                                      "(or use --engine transformers)")
        if gguf is None:
            raise modellib.ModelError(f"--engine llama runs GGUF models: give --base a .gguf file or leave it "
                                      f"out for the embedded model (got {spec.base!r}); or use --engine transformers")
        path, label = gguf
        files = llama_engine.model_files(path, adapter_dir, bases.adapter_format(spec.base))
        verdict = selfcheck.check(*files)  # a native crash kills a child, never this process
        notice = verdict.notice
        if notice:
            print(f"batplots: {notice}", file=sys.stderr)
        if verdict.engine == "llama":
            engine = llama_engine.LlamaEngine(*files, label=label, adapter=adapter_dir.name if adapter_dir else None,
                                              repack=verdict.repack)
            engine.notice = notice
            return engine
        if spec.engine == "llama":
            raise modellib.ModelError(f"--engine llama: {verdict.reason}. Use --engine transformers "
                                      "(`batplots doctor` has the details).")
    from batplots.model.engine.transformers_engine import TransformersEngine

    model, tokenizer, label = modellib.load_base(spec.base)
    if adapter_dir is not None:
        model = modellib.apply_adapter(model, adapter_dir)
    engine = TransformersEngine(model, tokenizer, label=label, adapter=adapter_dir.name if adapter_dir else None)
    engine.notice = notice
    return engine
