"""A remote backend: any OpenAI-compatible completions server (vLLM, llama.cpp's
server, llama-cpp-python's server, TGI, or another batplots app's /v1).

`--engine openai --base-url URL --model NAME`: the model runs elsewhere (on GPUs,
shared by many app instances) and this process stays small. Each sentence is one
streamed POST {base_url}/completions; the server's own prefix cache (vLLM's
automatic prefix caching, llama.cpp's cache_prompt) saves re-reading the story.

Failures never touch the story: a server that is down, answers with an error, or
is slower than the timeout raises EngineError with a message that says which.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Iterator

import httpx

from batplots.model.engine.base import Cancelled, Engine, EngineError, Guidance, Settings

# Seconds one request (one sentence) may take in all, and to wait between two chunks.
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
# Sent as "Authorization: Bearer ..." when set (vLLM --api-key, hosted servers).
API_KEY_ENV = "OPENAI_API_KEY"
# Without a tokenizer (no llama-cpp-python), story fitting estimates tokens from characters.
CHARS_PER_TOKEN = 4
# Requests in flight at once: the server batches them (vLLM, llama-server --parallel), so
# the Writer's takes and several writers need not queue here behind one another.
MAX_IN_FLIGHT = 16


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, base_url: str, model: str, timeout: float = DEFAULT_TIMEOUT_S, api_key: str | None = None):
        super().__init__()
        base_url = (base_url or "").strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            from batplots.model.weights import ModelError

            raise ModelError(f"--base-url must be an http:// or https:// URL such as http://127.0.0.1:8000/v1, "
                             f"got {base_url!r}")
        self.base_url = base_url
        self.model = model
        self.timeout = float(timeout)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT_S, self.timeout)))
        self._tokenizer = _local_tokenizer()
        self.lock = threading.BoundedSemaphore(MAX_IN_FLIGHT)

    def describe(self) -> dict:
        return {"engine": self.name, "base_url": self.base_url, "model": self.model}

    def count_tokens(self, text: str) -> int:
        """Tokens by the embedded model's tokenizer (the served model is usually the same
        base); without llama-cpp-python, an estimate from the length."""
        if not text:
            return 0
        if self._tokenizer is not None:
            return len(self._tokenizer.tokenize(text.encode("utf-8"), False, False))
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def payload(self, prompt: str, settings: Settings, seed: int) -> dict:
        """The request body: OpenAI fields plus the extensions vLLM (top_k,
        repetition_penalty, ignore_eos) and llama.cpp (repeat_penalty) read; servers
        ignore the ones they do not know."""
        return {
            "model": self.model, "prompt": prompt, "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k,
            "repetition_penalty": settings.repetition_penalty, "repeat_penalty": settings.repetition_penalty,
            "seed": seed, "stream": True, "ignore_eos": True,
        }

    def pieces(self, prompt: str, settings: Settings, seed: int,
               cancel: threading.Event | None, guidance: Guidance | None = None) -> Iterator[str]:
        # guidance is not sent: the server's token ids need not be this tokenizer's.
        url = f"{self.base_url}/completions"
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("POST", url, json=self.payload(prompt, settings, seed),
                                     headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise EngineError(_http_error(url, response, self.model))
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    if time.monotonic() > deadline:
                        raise EngineError(f"the model server at {self.base_url} is too slow: no complete answer "
                                          f"within {self.timeout:g} s")
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    yield _chunk_text(data, self.base_url)
        except httpx.ConnectError as exc:
            raise EngineError(f"the model server at {self.base_url} is not reachable ({exc}); is it running, and is "
                              "--base-url right?") from exc
        except httpx.TimeoutException as exc:
            raise EngineError(f"the model server at {self.base_url} did not answer within {self.timeout:g} s "
                              f"({exc.__class__.__name__})") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"the connection to the model server at {self.base_url} failed: {exc}") from exc

    def list_models(self) -> list[str]:
        """The model names the server serves (GET {base_url}/models)."""
        url = f"{self.base_url}/models"
        try:
            response = self._client.get(url, headers=self._headers)
        except httpx.ConnectError as exc:
            raise EngineError(f"the model server at {self.base_url} is not reachable ({exc})") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"the model server at {self.base_url} failed: {exc}") from exc
        if response.status_code >= 400:
            raise EngineError(_http_error(url, response, self.model))
        try:
            return [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"{url} did not answer with an OpenAI model list") from exc


def _chunk_text(data: str, base_url: str) -> str:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise EngineError(f"the model server at {base_url} sent a stream chunk that is not JSON: {data[:200]!r}") from exc
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        raise EngineError(f"the model server at {base_url} failed: "
                          f"{error.get('message', error) if isinstance(error, dict) else error}")
    try:
        return chunk["choices"][0].get("text") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EngineError(f"the model server at {base_url} sent a chunk without choices[0].text: {data[:200]!r}") from exc


def _http_error(url: str, response: httpx.Response, model: str) -> str:
    try:
        body = response.json()
        detail = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
    except ValueError:
        detail = response.text[:300]
    hint = ""
    if response.status_code == 404:
        hint = (f" (is --model {model!r} served there, and does --base-url end with the API prefix, "
                "usually /v1?)")
    elif response.status_code in (401, 403):
        hint = f" (set ${API_KEY_ENV} to the server's API key)"
    return f"the model server answered {response.status_code} to POST {url}: {detail}{hint}"


def _local_tokenizer():
    """The embedded GGUF's tokenizer alone (vocab_only: a few MB, no weights, no
    context), or None without llama-cpp-python."""
    try:
        import llama_cpp
        from llama_cpp import _internals
    except ImportError:
        return None
    from batplots.model.weights import ModelError, embedded_gguf

    try:
        path = embedded_gguf()
    except ModelError:
        return None
    from llama_cpp import _logger

    _logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    return _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
