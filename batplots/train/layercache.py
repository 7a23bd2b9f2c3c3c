"""Run the frozen bottom of the model once per window instead of once per step.

When only layers k.. train (LoRA or full), layers 0..k-1 and the embeddings are
frozen and (in eval mode) deterministic: their output for a window never
changes. So we compute the input of layer k once for every training and
validation window and, at each step, feed it straight into layers k.. via
`inputs_embeds` with the layer list temporarily cut to blocks[k:]. For
Llama-style models this gives bit-identical logits; `FrozenBottom.check` compares
both paths on a window and the trainer falls back to full forwards otherwise
(GPT-2, for one, adds position embeddings to `inputs_embeds`).
"""

from __future__ import annotations

import contextlib

import torch

# Logits of the cached path may differ from the full forward by float noise only
# (fp32 on CPU; bf16 autocast on CUDA rounds more).
CHECK_TOLERANCE = {"cpu": 1e-4, "cuda": 5e-2}


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once layer k's input is known."""


def find_layers(model) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """(owner module, attribute name, the ModuleList) of the model's transformer blocks."""
    n = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            owner_name, _, attr = name.rpartition(".")
            return model.get_submodule(owner_name), attr, module
    raise ValueError(f"cannot find the {n} transformer layers of {type(model).__name__}")


class FrozenBottom:
    """Cached inputs of layer k for fixed windows, and the forward from layer k up."""

    def __init__(self, model, k: int):
        self.k = k
        self.owner, self.attr, self.blocks = find_layers(model)
        self.top_blocks = torch.nn.ModuleList(list(self.blocks)[k:])

    @torch.no_grad()
    def hidden(self, model, ids: torch.Tensor) -> torch.Tensor:
        """The input of layer k for ids (the layers below run in eval mode)."""
        store = {}

        def hook(module, args, kwargs):
            store["h"] = args[0] if args else kwargs["hidden_states"]
            raise _Captured

        was_training = model.training
        model.eval()
        handle = self.blocks[self.k].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            model(input_ids=ids, use_cache=False)
        except _Captured:
            pass
        finally:
            handle.remove()
            model.train(was_training)
        return store["h"].detach().clone()

    @contextlib.contextmanager
    def _top_only(self):
        setattr(self.owner, self.attr, self.top_blocks)
        try:
            yield
        finally:
            setattr(self.owner, self.attr, self.blocks)

    def forward(self, model, hidden: torch.Tensor, labels: torch.Tensor | None = None):
        """The model's output for windows whose layer-k input is `hidden`."""
        with self._top_only():
            return model(inputs_embeds=hidden, labels=labels, use_cache=False)

    def logits(self, model, hidden: torch.Tensor) -> torch.Tensor:
        return self.forward(model, hidden).logits

    @torch.no_grad()
    def check(self, model, ids: torch.Tensor) -> float:
        """Largest logit difference between the cached path and a full forward on ids."""
        was_training = model.training
        model.eval()
        try:
            full = model(input_ids=ids, use_cache=False).logits.float()
            part = self.forward(model, self.hidden(model, ids)).logits.float()
        finally:
            model.train(was_training)
        return float((full - part).abs().max())
