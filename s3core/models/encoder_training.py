"""Contrastive training of the tiny encoder, so dense retrieval on the tiny world (DESIGN.md section 4) works.

``build_tiny_models`` makes a random-init BERT, and a random encoder retrieves at chance level. This module
turns it into a small but real dense retriever with the tiny world's own supervision: every TRAIN question
paired with each passage in its ``metadata.supporting_ids``. Only ``train.jsonl`` and ``corpus.jsonl`` are
ever opened, so dev and test questions stay unseen and the dense numbers measured on them mean something.

Inputs follow the inference convention of ``s3core.retrieval.encoder`` exactly: ``query_prefix + question``
and ``passage_prefix + '"Title"\\ntext'``, mean pooling over the attention mask, L2 normalisation, inner
product (the pooling function is imported from there, so training and indexing cannot drift apart).

How this differs from the textbook recipe (DPR, E5 fine-tuning), and why:
- negatives are the other passages of the batch only, with no mined hard negatives: the world is small and
  the model is trained from scratch in a few hundred CPU steps, where in-batch negatives already give most
  of the gain and mining would need a second index;
- pairs of a batch can share a query (one question, two supporting passages; one title, several passages)
  or a passage (two questions about the same fact). Those off-diagonal pairs are positives, not negatives,
  so they are masked out of the softmax instead of being pushed apart;
- dropout is off (the model trains in eval mode): on CPU, sampling the dropout masks took more than half of
  each step's time, and on the default world dev recall was the same without it (0.97 vs 0.97 support
  recall@20 after 150 steps), so the time buys more steps instead;
- the loss is symmetric (query -> passage and passage -> query, averaged), which helps a model trained from
  random weights more than it helps a pretrained one;
- optional (entity title -> each of its passages) pairs, read from the corpus, stand in for E5's weakly
  supervised pre-training: they teach the encoder every entity's name, including entities no train question
  mentions. The corpus is the retrieval collection, not held-out data, so this leaks no dev/test question.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from s3core.config.tiny_models import EncoderTrainingConfig
from s3core.data.formats import split_wiki_contents
from s3core.models.pooling import Pooling, embed_hidden, passage_input

TRAIN_FILE = "train.jsonl"
CORPUS_FILE = "corpus.jsonl"

Pair = tuple[str, str]  # (query text, passage text '"Title"\ntext'), both without prefixes


# -- pairs ---------------------------------------------------------------------------------------------
def _read_corpus(path: Path) -> dict[str, tuple[str, str]]:
    """corpus.jsonl (wiki-18: {"id", "contents": '"Title"\\ntext'}) -> {id: (title, text)}, in file order."""
    passages: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                passages[str(record["id"])] = split_wiki_contents(record["contents"])
    return passages


def _question_pairs(path: Path, passages: dict[str, tuple[str, str]], bridge_pairs: bool) -> Iterator[Pair]:
    """(question, supporting passage) for every question of a FlashRAG file and the ids it lists, in order.

    A question with a bridge entity (metadata.bridge, a two-hop question) is paired with its first-hop passage
    only, unless bridge_pairs: its second-hop passage is about an entity the question does not name.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            supporting = (record.get("metadata") or {}).get("supporting_ids")
            if not supporting:
                raise ValueError(
                    f"{path} line {number} (question {record.get('id')!r}) has no metadata.supporting_ids; encoder "
                    "training needs them: use a tiny world folder (s3core.data.tiny_world.write_world) or turn it "
                    "off with tiny_models.encoder_training.enabled: false"
                )
            if (record.get("metadata") or {}).get("bridge") and not bridge_pairs:
                supporting = supporting[:1]  # chain order: the passage about the entity the question names
            for pid in supporting:
                if str(pid) not in passages:
                    raise ValueError(
                        f"{path} line {number}: supporting id {pid!r} is not in {CORPUS_FILE}; the questions and "
                        "the corpus must come from the same tiny world (regenerate the world folder)"
                    )
                yield record["question"], passage_input(*passages[str(pid)])


def training_pairs(world_dir: Path, include_titles: bool, bridge_pairs: bool = False) -> list[Pair]:
    """The (query, passage) pairs the encoder is trained on, in a fixed order.

    First one pair per (train question, supporting id), in train.jsonl order, where a two-hop question keeps
    only its first hop unless bridge_pairs (see EncoderTrainingConfig.bridge_pairs); then, with include_titles, one
    (title, passage) pair per corpus passage, in corpus order. Passages are '"Title"\\ntext' strings without a
    prefix. Reads only world_dir/train.jsonl and world_dir/corpus.jsonl: dev and test are never opened.
    """
    world_dir = Path(world_dir)
    passages = _read_corpus(world_dir / CORPUS_FILE)
    pairs = list(_question_pairs(world_dir / TRAIN_FILE, passages, bridge_pairs))
    if include_titles:
        pairs.extend((title, passage_input(title, text)) for title, text in passages.values() if title)
    if not pairs:
        raise ValueError(f"{world_dir} gave no training pairs: {TRAIN_FILE} is empty and title pairs are off")
    return pairs


# -- pure tensor functions -----------------------------------------------------------------------------
def shared_positive_mask(queries: Sequence[str], passages: Sequence[str]) -> torch.Tensor:
    """[B, B] bool, True at (i, j), i != j, where pairs i and j share their query or their passage.

    Such a j is a positive for i in both directions (query i also fits passage j, passage i also fits query j),
    so it must not be counted as a negative.
    """
    def same(texts: Sequence[str]) -> torch.Tensor:
        ids = {text: index for index, text in enumerate(dict.fromkeys(texts))}
        codes = torch.tensor([ids[text] for text in texts])  # [B]
        return codes[:, None] == codes[None, :]  # [B, B]

    mask = same(queries) | same(passages)  # [B, B]
    mask.fill_diagonal_(False)
    return mask


def info_nce_loss(q: torch.Tensor, p: torch.Tensor, same_passage_mask: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE: q [B, H] and p [B, H] unit vectors, pair i = (q[i], p[i]) -> scalar.

    Row i's positive is column i; every other column is a negative unless same_passage_mask [B, B] marks it
    as another positive, in which case it is left out of the softmax. The query -> passage and
    passage -> query cross-entropies are averaged.
    """
    logits = q @ p.T / temperature  # [B, B]
    logits = logits.masked_fill(same_passage_mask, float("-inf"))  # [B, B]
    targets = torch.arange(q.shape[0], device=q.device)  # [B]
    q_to_p = F.cross_entropy(logits, targets)
    p_to_q = F.cross_entropy(logits.T, targets)  # the mask is symmetric, so its transpose is the same
    return (q_to_p + p_to_q) / 2


def warmup_then_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor of step (0-based): linear from ~0 to 1 over warmup_steps, then linear to 0 at total."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


# -- batches -------------------------------------------------------------------------------------------
class PairBatch(NamedTuple):
    """One training step's inputs."""

    queries: dict[str, torch.Tensor]  # tokenised prefixed queries: input_ids / attention_mask / ..., each [B, Tq]
    passages: dict[str, torch.Tensor]  # tokenised prefixed passages, each [B, Tp]
    same_passage_mask: torch.Tensor  # [B, B] bool, other positives of each pair (see shared_positive_mask)


def batch_indices(n_pairs: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """steps batches of pair indices: a seeded shuffle per epoch, cut into whole batches (the tail is dropped).

    With fewer pairs than batch_size, every batch holds all pairs, reshuffled.
    """
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, n_pairs)
    made = 0
    while made < steps:
        order = torch.randperm(n_pairs, generator=generator).tolist()
        for start in range(0, n_pairs - size + 1, size):
            if made == steps:
                return
            yield order[start:start + size]
            made += 1


def make_batch(pairs: Sequence[Pair], indices: Sequence[int], tokenizer: PreTrainedTokenizerBase,
               cfg: EncoderTrainingConfig) -> PairBatch:
    """Tokenise the prefixed queries and passages of pairs[indices] and mark their shared positives."""
    queries = [pairs[i][0] for i in indices]
    passages = [pairs[i][1] for i in indices]

    def tokenize(texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(tokenizer(texts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"))

    return PairBatch(
        queries=tokenize([cfg.query_prefix + text for text in queries]),
        passages=tokenize([cfg.passage_prefix + text for text in passages]),
        same_passage_mask=shared_positive_mask(queries, passages),
    )


def embed(model: PreTrainedModel, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit vectors as DenseEncoder computes them (mean pooling, L2 norm): each [B, T] -> [B, H]."""
    hidden = model(**tokens).last_hidden_state  # [B, T, H]
    return embed_hidden(hidden, tokens["attention_mask"], Pooling.MEAN)  # [B, H]


# -- the loop ------------------------------------------------------------------------------------------
def train_encoder(encoder_dir: Path, pairs: Sequence[Pair], cfg: EncoderTrainingConfig) -> dict:
    """Train the encoder folder's model on pairs and save it back into encoder_dir; returns the run's stats.

    The tokenizer files in encoder_dir are left as they are. On CPU the result depends only on the folder,
    the pairs and cfg (a seeded pair order, no dropout); the caller's global torch RNG is left untouched.
    """
    if len(pairs) < 2:
        raise ValueError(
            f"{len(pairs)} training pair(s): the other pairs of a batch are the negatives, so at least 2 are "
            "needed; build them with training_pairs(world_dir, include_titles=True)"
        )
    encoder_dir = Path(encoder_dir)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AutoModel.from_pretrained(encoder_dir)
        losses = _optimise(model, tokenizer, pairs, cfg)
    model.save_pretrained(encoder_dir)
    return {
        "steps": len(losses),
        "pairs": len(pairs),
        "batch_size": min(cfg.batch_size, len(pairs)),
        "first_loss": round(losses[0], 4),
        "final_loss": round(losses[-1], 4),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _optimise(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
              cfg: EncoderTrainingConfig) -> list[float]:
    """Run cfg.steps AdamW steps on model in place; the loss of every step."""
    model.eval()  # dropout off while training: see the module docstring
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    warmup = math.ceil(cfg.warmup_fraction * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_then_decay(step, cfg.steps, warmup))
    losses = []
    for indices in batch_indices(len(pairs), cfg.batch_size, cfg.steps, cfg.seed):
        batch = make_batch(pairs, indices, tokenizer, cfg)
        q = embed(model, batch.queries)  # [B, H]
        p = embed(model, batch.passages)  # [B, H]
        loss = info_nce_loss(q, p, batch.same_passage_mask, cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses
