"""Continuation engines. `load_engine` builds the one the CLI and web app ask for."""

from __future__ import annotations

from dataclasses import dataclass

from batplots.engine.base import (  # noqa: F401  (re-exported API)
    Cancelled,
    Continuation,
    Engine,
    EngineError,
    Rewind,
    Settings,
    SettingsError,
    consume,
)

ENGINES = ("auto", "transformers")


@dataclass(frozen=True)
class EngineSpec:
    """Which engine to load, as the CLI's --engine/--base/--adapter options say."""

    engine: str = "auto"  # one of ENGINES
    base: str | None = None  # None = the embedded SmolLM2-135M-Instruct
    adapter: str | None = None  # None = the shipped default adapter, "none" = bare base


def load_engine(spec: EngineSpec) -> Engine:
    """Load the engine that spec names (the model is loaded once, here)."""
    from batplots import guard
    from batplots import model as modellib

    if spec.engine not in ENGINES:
        raise modellib.ModelError(f"unknown engine {spec.engine!r}; choose one of: {', '.join(ENGINES)}")
    from batplots.engine.transformers_engine import TransformersEngine

    model, tokenizer, label = modellib.load_base(spec.base)
    adapter_dir = modellib.resolve_adapter(spec.adapter)
    if adapter_dir is not None:
        model = modellib.apply_adapter(model, adapter_dir)
    engine = TransformersEngine(model, tokenizer, label=label, adapter=adapter_dir.name if adapter_dir else None)
    return guard.attach(engine, adapter_dir)  # the copy guard is on wherever an engine is used
