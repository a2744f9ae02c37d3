"""ToyWorld's text side: a word-level tokenizer in CLIP's layout and a tiny CLIP-like text transformer.

Tokenizer: ``<start> words… <end> <pad>…`` over a fixed context of :data:`CONTEXT_LEN` ids, as CLIP's
77-token layout; the empty prompt ``""`` is ``<start> <end> <pad>…`` (the unconditional of CFG, as on SD).
Text encoder: token + position embeddings, a causal pre-LN transformer (CLIP's mask: a token sees itself and
the tokens before it, so the padding rows summarise the whole prompt) and a final LayerNorm; its per-token
outputs ``[B, L, width]`` are the context the denoiser's ``attn2`` reads. Module names follow HF CLIP
(``embeddings.token_embedding``, ``encoder.layers.N.self_attn.q_proj`` …, ``final_layer_norm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .world import CAPTION_WORDS

SPECIAL: tuple[str, ...] = ("<pad>", "<start>", "<end>")
VOCAB: tuple[str, ...] = (*SPECIAL, *CAPTION_WORDS)
"""id → token; ids 0, 1, 2 are pad, start, end."""
PAD, START, END = 0, 1, 2
CONTEXT_LEN = 12
"""Tokens per prompt: start + at most 10 words + end, padded (the longest caption has 10 words)."""


def word_ids(text: str, prompt: str | None = None) -> list[int]:
    """Token ids of the words of ``text`` (lower-cased; split on whitespace, commas and full stops).

    Raises ``ValueError`` naming the unknown words and listing the world's words.
    """
    words = text.lower().replace(",", " ").replace(".", " ").split()
    unknown = [w for w in words if w not in CAPTION_WORDS]
    if unknown:
        raise ValueError(f"ToyWorld's tokenizer does not know {unknown} in {prompt or text!r}; its words are "
                         f"{', '.join(CAPTION_WORDS)} (e.g. 'a circle', 'a small red square on the left')")
    return [VOCAB.index(w) for w in words]


def check_length(n_words: int, prompt: str, context_len: int = CONTEXT_LEN) -> None:
    """``ValueError`` when ``n_words`` do not fit between ``<start>`` and ``<end>``."""
    if n_words > context_len - 2:
        raise ValueError(f"prompt {prompt!r} has {n_words} words; at most {context_len - 2} fit in ToyWorld's "
                         f"{context_len}-token context")


def tokenize(prompt: str, context_len: int = CONTEXT_LEN) -> torch.Tensor:
    """``[context_len]`` token ids of a prompt: ``<start>`` words ``<end>`` ``<pad>``…"""
    ids = word_ids(prompt)
    check_length(len(ids), prompt, context_len)
    ids = [START, *ids, END]
    return torch.tensor(ids + [PAD] * (context_len - len(ids)), dtype=torch.long)


def tokenize_batch(prompts: list[str], context_len: int = CONTEXT_LEN) -> torch.Tensor:
    """``[len(prompts), context_len]`` ids."""
    return torch.stack([tokenize(p, context_len) for p in prompts])


@dataclass(frozen=True)
class TextConfig:
    width: int = 64
    """Per-token output width (the denoiser's context dimension)."""
    layers: int = 2
    heads: int = 4
    context_len: int = CONTEXT_LEN
    vocab_size: int = len(VOCAB)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        split = lambda t: t.view(b, n, self.heads, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                           is_causal=True)
        return self.out_proj(o.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.layer_norm1, self.self_attn = nn.LayerNorm(width), SelfAttention(width, heads)
        self.layer_norm2, self.mlp = nn.LayerNorm(width), MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Embeddings(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = nn.Embedding(cfg.context_len, cfg.width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.token_embedding(ids) + self.position_embedding(pos)[None]


class Layers(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg.width, cfg.heads) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TextEncoder(nn.Module):
    """Token ids ``[B, L]`` → per-token context ``[B, L, width]``; ``pooled`` is the row of ``<end>``."""

    def __init__(self, cfg: TextConfig = TextConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Layers(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.final_layer_norm(self.encoder(self.embeddings(ids)))

    @staticmethod
    def pooled(context: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``[B, width]``: each prompt's output at its ``<end>`` token (CLIP's pooled output)."""
        return context[torch.arange(ids.shape[0]), (ids == END).int().argmax(1)]
