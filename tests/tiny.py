"""Tiny real models for fast tests: a byte-level BPE trained in milliseconds and
random-initialised Llama / GPT-2 configs, optionally trained for a few seconds on
plain sentences so that they write something sentence-shaped. Nothing is downloaded."""

from __future__ import annotations

import functools

import torch

SENTENCES = [
    "Batman and Robin slide down the Batpoles.",
    "The Joker laughs at the museum.",
    "Robin cries, \"Holy haberdashery, Batman!\"",
    "Commissioner Gordon picks up the red phone.",
    "The Riddler leaves a clue at the bank.",
    "Alfred serves tea in the study.",
    "Catwoman steals the golden cat.",
    "The Dynamic Duo race to Gotham City.",
]
TEXT = " ".join(SENTENCES * 6)


@functools.lru_cache(maxsize=None)
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def _decoder_sizes() -> dict:
    """The tiny sizes the Llama-style models share (Llama and Qwen2 take the same keys)."""
    return dict(vocab_size=len(tokenizer()), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)


def llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**_decoder_sizes())).eval()


def qwen2(seed: int = 0):
    """A tiny Qwen2 (the 1.5B base's architecture: biases on q/k/v, no rotary reorder in GGUF)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**_decoder_sizes())).eval()
    with torch.no_grad():  # random biases, so that a converter which drops them is caught
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tokenizer()), n_embd=64, n_layer=2, n_head=4, n_positions=2048,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def fit(model, steps: int = 60, seq: int = 64):
    """A few seconds of plain training so the model writes sentence-shaped text."""
    ids = torch.tensor(tokenizer()(TEXT)["input_ids"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (8,), generator=gen)
        batch = torch.stack([ids[s:s + seq] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@functools.lru_cache(maxsize=None)
def trained_llama():
    return fit(llama())


@functools.lru_cache(maxsize=None)
def trained_gpt2():
    return fit(gpt2())
