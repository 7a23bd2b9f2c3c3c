"""A PEFT LoRA adapter, made runnable by llama.cpp, in one of two forms:

- merged (the default): one GGUF holding the base with the adapter merged in; the
  matrices the adapter changes are re-encoded as Q8_0, every other tensor keeps the
  base's own Q4_1 blocks byte for byte;
- lora: a GGUF LoRA that llama.cpp adds at run time to the untouched Q4_1 base
  (also what `llama-server --lora` takes, see README "Scaling out").

Chosen by measurement (README "Speed", `batplots bench --formats`): merged Q8_0
scores the transformers engine's perplexity (its reference is the dequantised Q4_1
base plus the adapter, which Q8_0 holds almost exactly) at the bare base's speed;
the runtime LoRA is a little further off and pays f32 matmuls beside the quantised
ones; merging back into Q4_1 loses the fine-tune (a LoRA's delta is small next to a
4-bit step); F16 is exact but slower and larger.

Conversions are cached under `batplots.files.home()`, keyed by a hash of the
adapter's files, so a retrained adapter converts afresh and an unchanged one
never converts twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from batplots import files
from batplots.model import weights as modellib

# Bump when the written file changes meaning: old cache entries are then ignored.
CONVERTER_VERSION = 2
CACHE_SUBDIR = "gguf-lora"
MERGED_SUBDIR = "gguf-merged"
# Adapter forms: merged weights in one of these GGUF types, or a runtime LoRA.
FORMATS = ("q8_0", "q4_1", "f16", "lora")
DEFAULT_FORMAT = "q8_0"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# Base architectures whose adapters convert (SmolLM2 is llama, Qwen2.5 is qwen2); the
# same Hugging Face module names map to the same llama.cpp tensors in both.
ARCHITECTURES = ("llama", "qwen2")
# convert_hf_to_gguf reorders q/k rows for llama's rotary layout only; qwen2 keeps them.
PERMUTED = frozenset({"llama"})

# PEFT (Hugging Face Llama) module name -> llama.cpp tensor name inside block N.
MODULE_MAP = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_KEY = re.compile(r"^(?:base_model\.model\.)?(?:model\.)?layers\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def _weights_file(adapter_dir: Path) -> Path:
    for name in WEIGHT_FILES:
        if (adapter_dir / name).is_file():
            return adapter_dir / name
    raise modellib.ModelError(f"adapter {adapter_dir} has no weights file ({' or '.join(WEIGHT_FILES)})")


def adapter_hash(adapter_dir: Path) -> str:
    """sha256 over the adapter's config and weights (and the converter version)."""
    digest = hashlib.sha256(f"gguf-lora-v{CONVERTER_VERSION}\n".encode())
    for path in (adapter_dir / "adapter_config.json", _weights_file(adapter_dir)):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cached_path(adapter_dir: Path, fmt: str = "lora", base_gguf: Path | None = None) -> Path:
    """Where the converted adapter lives: keyed by the adapter's hash, and for merged
    files (which hold the base too) by the base file's name and size."""
    digest = adapter_hash(adapter_dir)[:16]
    if fmt == "lora":
        return files.home() / CACHE_SUBDIR / f"{adapter_dir.name}-{digest}.gguf"
    base = f"{base_gguf.stem}-{base_gguf.stat().st_size}"
    return files.home() / MERGED_SUBDIR / f"{adapter_dir.name}-{digest}-{base}-{fmt}.gguf"


def ensure_format(adapter_dir: Path, base_gguf: Path, fmt: str = DEFAULT_FORMAT) -> Path:
    """The cached GGUF of adapter_dir in form fmt (one of FORMATS), written if needed."""
    if fmt not in FORMATS:
        raise modellib.ModelError(f"unknown adapter format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    target = cached_path(adapter_dir, fmt, base_gguf)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        if fmt == "lora":
            convert(adapter_dir, Path(tmp), base_gguf)
        else:
            merge(adapter_dir, Path(tmp), base_gguf, fmt)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _base_heads(base_gguf: Path) -> tuple[str, int, int]:
    """(architecture, n_head, n_head_kv) read from the base GGUF's metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))

    def value(key):
        field = reader.get_field(key)
        if field is None:
            return None
        return field.contents()

    arch = value("general.architecture")
    if arch not in ARCHITECTURES:
        raise modellib.ModelError(f"GGUF LoRA conversion supports {', '.join(ARCHITECTURES)} bases; "
                                  f"{base_gguf.name} is {arch!r}")
    n_head = int(value(f"{arch}.attention.head_count"))
    n_head_kv = int(value(f"{arch}.attention.head_count_kv") or n_head)
    return arch, n_head, n_head_kv


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches the module name's end."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


def _permute_rows(b: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores q/k rows in a different rotary order than Hugging Face
    (convert_hf_to_gguf's `permute`); LoRA B's rows are output rows, so they follow."""
    out, rank = b.shape
    return b.reshape(n_head, 2, out // n_head // 2, rank).swapaxes(1, 2).reshape(out, rank)


def load_lora_tensors(adapter_dir: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(adapter_config, {module path "layers.N.self_attn.q_proj": {"A": ..., "B": ...}})."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise modellib.ModelError(f"adapter {adapter_dir}: only LoRA adapters convert to GGUF, "
                                  f"this one is {config.get('peft_type')!r}")
    if config.get("use_dora"):
        raise modellib.ModelError(f"adapter {adapter_dir}: DoRA adapters cannot run as a llama.cpp LoRA; "
                                  "use --engine transformers")
    weights = _weights_file(adapter_dir)
    if weights.suffix == ".safetensors":
        from safetensors.numpy import load_file

        state = load_file(str(weights))
    else:
        import torch

        state = {k: v.float().numpy() for k, v in torch.load(weights, map_location="cpu", weights_only=True).items()}
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if match is None or match.group(2) not in MODULE_MAP:
            raise modellib.ModelError(
                f"adapter {adapter_dir}: tensor {key!r} cannot be converted to a llama.cpp LoRA "
                f"(supported: LoRA A/B on {', '.join(MODULE_MAP)}); use --engine transformers")
        modules.setdefault(f"layers.{match.group(1)}.{match.group(2)}", {})[match.group(3)] = (
            np.asarray(tensor, dtype=np.float32))
    if not modules:
        raise modellib.ModelError(f"adapter {adapter_dir} holds no LoRA tensors")
    for name, pair in modules.items():
        if set(pair) != {"A", "B"}:
            raise modellib.ModelError(f"adapter {adapter_dir}: {name} lacks its LoRA {'A' if 'A' not in pair else 'B'}")
    return config, modules


def scaled_pairs(adapter_dir: Path, base_gguf: Path):
    """(llama.cpp tensor name, A, B) per adapted module, B carrying PEFT's scaling
    (alpha/r, rsLoRA's alpha/sqrt(r), per-module alpha patterns) and llama.cpp's row
    order, so that the module's weight delta is exactly B @ A."""
    arch, n_head, n_head_kv = _base_heads(base_gguf)
    config, modules = load_lora_tensors(adapter_dir)
    for name in sorted(modules, key=lambda n: (int(n.split(".")[1]), n)):
        a, b = modules[name]["A"], modules[name]["B"]
        rank = a.shape[0]
        alpha = _pattern_value(config.get("alpha_pattern"), name, config.get("lora_alpha", rank))
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        b = b * np.float32(scaling)
        module = name.split(".", 2)[2]
        if arch in PERMUTED and module == "self_attn.q_proj":
            b = _permute_rows(b, n_head)
        elif arch in PERMUTED and module == "self_attn.k_proj":
            b = _permute_rows(b, n_head_kv)
        yield f"blk.{name.split('.')[1]}.{MODULE_MAP[module]}.weight", a, b


def convert(adapter_dir: Path, out_path: Path, base_gguf: Path) -> None:
    """Write adapter_dir as a GGUF LoRA for base_gguf at out_path."""
    import gguf

    writer = gguf.GGUFWriter(str(out_path), _base_heads(base_gguf)[0])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    # alpha 0 tells llama.cpp to use scale 1: the scaling is folded into B already.
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 0.0)
    writer.add_string("general.name", f"batplots LoRA {adapter_dir.name}")
    for dest, a, b in scaled_pairs(adapter_dir, base_gguf):
        # numpy (rank, in) / (out, rank) are GGUF ne [in, rank] / [rank, out], as llama.cpp expects.
        writer.add_tensor(dest + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(dest + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def merge(adapter_dir: Path, out_path: Path, base_gguf: Path, fmt: str = DEFAULT_FORMAT) -> None:
    """Write base_gguf with adapter_dir merged in: each matrix the adapter changes as
    fmt (q8_0, q4_1 or f16), every other tensor and all metadata (tokenizer, chat
    template, hyperparameters) copied as they are."""
    import gguf
    from gguf import quants

    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
             "f16": gguf.GGMLQuantizationType.F16}[fmt]
    pairs = {dest: (a, b) for dest, a, b in scaled_pairs(adapter_dir, base_gguf)}
    reader = gguf.GGUFReader(str(base_gguf))
    writer = gguf.GGUFWriter(str(out_path), _base_heads(base_gguf)[0], use_temp_file=True)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        if tensor.name not in pairs:
            # Untouched by the adapter: the base's own blocks, byte for byte (exact, and
            # as fast as the base; an adapter on the top layers only leaves most as Q4_1).
            writer.add_tensor(tensor.name, np.array(tensor.data), raw_dtype=tensor.tensor_type)
            continue
        a, b = pairs.pop(tensor.name)
        weight = quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32) + b @ a
        if qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tensor.name, weight.astype(np.float16))
        else:
            writer.add_tensor(tensor.name, quants.quantize(weight, qtype), raw_dtype=qtype)
    if pairs:
        raise modellib.ModelError(f"adapter {adapter_dir}: the base {base_gguf.name} has no tensor "
                                  f"{next(iter(pairs))}; was the adapter trained on another base?")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
