import os
from pathlib import Path

import pytest

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "batman66.txt"


@pytest.fixture(autouse=True)
def batplots_home(tmp_path, monkeypatch):
    """Every test gets its own user directory, so nothing touches ~/.cache/batplots."""
    home = tmp_path / "batplots-home"
    monkeypatch.setenv("BATPLOTS_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BATPLOTS_CORPUS", raising=False)  # the guard finds the corpus as training.json says
    return home


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core box two spinning
    threads per process slow them down tenfold. Real-model tests take the cores back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield before
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def real_model_home(tmp_path_factory):
    """One user directory shared by the few real-model tests: the embedded model is
    converted once per test run (~40 s) and reused by each of them."""
    return tmp_path_factory.mktemp("real-home")


@pytest.fixture
def real_home(real_model_home, monkeypatch, one_torch_thread):
    import torch

    monkeypatch.setenv("BATPLOTS_HOME", str(real_model_home))
    torch.set_num_threads(one_torch_thread)
    yield real_model_home
    torch.set_num_threads(1)


@pytest.fixture
def shared_corpus():
    if not SHARED_CORPUS.is_file():
        pytest.fail(f"the shared corpus is missing at {SHARED_CORPUS}")
    return SHARED_CORPUS


@pytest.fixture
def tiny_engine():
    """A TransformersEngine on a tiny Llama trained for a few seconds on sentences."""
    from batplots.model.engine.transformers_engine import TransformersEngine
    from tests import tiny

    return TransformersEngine(tiny.trained_llama(), tiny.tokenizer(), label="tiny-llama")


@pytest.fixture
def tiny_gpt2_engine():
    from batplots.model.engine.transformers_engine import TransformersEngine
    from tests import tiny

    return TransformersEngine(tiny.trained_gpt2(), tiny.tokenizer(), label="tiny-gpt2")


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server (Debian's postgresql package) for the test run."""
    from tests.pgserver import PgServer

    with PgServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server):
    """The URL of a new, empty database on the throwaway server."""
    return pg_server.create_database()
