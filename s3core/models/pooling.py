"""How an encoder's token vectors become one embedding, and the text a passage is encoded from (DESIGN.md
section 2, e5-base-v2 as s3 uses it): mean or [CLS] pooling in float32, then L2 normalisation.

Shared by the dense retriever (retrieval/encoder.py) and the tiny encoder's training (models/encoder_training.py),
so training and retrieval embed the same way. Imports only torch.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
import torch.nn.functional as F


class Pooling(str, Enum):
    MEAN = "mean"
    CLS = "cls"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where mask is 1: [B, T, H], [B, T] -> [B, H]."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    summed = (hidden * weights).sum(dim=1)  # [B, H]
    return summed / weights.sum(dim=1).clamp(min=1.0)  # [B, H]


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's vector ([CLS] for BERT tokenizers): [B, T, H] -> [B, H]."""
    return hidden[:, 0]  # [B, H]


POOLERS: dict[Pooling, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    Pooling.MEAN: mean_pool,
    Pooling.CLS: cls_pool,
}


def pooling_from_name(name: str | Pooling) -> Pooling:
    try:
        return Pooling(name)
    except ValueError:
        valid = ", ".join(p.value for p in Pooling)
        raise ValueError(f"unknown pooling {name!r}; valid names: {valid}") from None


def embed_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool in float32 and L2-normalise: [B, T, H], [B, T] -> [B, H] unit vectors."""
    pooled = POOLERS[pooling](hidden.float(), mask)  # [B, H]
    return F.normalize(pooled, p=2.0, dim=-1)  # [B, H]


# -- inputs --------------------------------------------------------------------------------------------
def passage_input(title: str, text: str, prefix: str = "") -> str:
    """The string a passage is encoded from: prefix + wiki-18 contents ('"Title"\\ntext')."""
    return f'{prefix}"{title}"\n{text}'
