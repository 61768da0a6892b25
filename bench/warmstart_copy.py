"""Does the warm start teach the searcher to copy the bridge entity's name? Per-part held-out loss, side by side.

    # 1. export the oracle's trajectories of a config (CPU, here; the world, models and index come from the store):
    .venv/bin/python bench/warmstart_copy.py --export bench/out/copy-1k --config configs/tiny.yaml
    .venv/bin/python bench/warmstart_copy.py --export bench/out/copy-5k --config configs/tiny-experiment.yaml
    # 2. fine-tune searchers of several shapes on them (GPU machine: needs only torch and transformers):
    python bench/warmstart_copy.py --data bench/out/copy-5k --shape 64x2 --context-weight 0.1 --steps 3000 \\
        --batch-size 32 --lr 3e-3 --device cuda

Export writes `trajectories.pt` (token ids and policy masks of `passes` noisy oracle trajectories per train
question, and one noise-free trajectory per dev question, made by the real rollout engine with the config's
s3 strategy, limits and prompt) and the config's `searcher` folder, whose tokenizer and model config the
training mode starts from (random init, resized to --shape).

Export makes the trajectories with the stage's own `oracle_trajectories`, and training runs the stage's own
loop (s3core.warmstart.sft.train_on_examples, with its loss `token_losses`). Every steps/5 it prints
one JSON line with the mean loss, on dev and on 100 train trajectories, of each part of the policy's turns:
the doc ids in `<important_info>`, the stop flag, and the query; and `query_first_acc`, the share of
queries whose first token is the greedy prediction. In the oracle's queries that token starts the name of
the entity to search, which the model can only get right by reading it from a passage (or the question),
so it measures copying. A train/dev gap there is memorisation of the train questions' names.
`ids_exact_first` and `ids_exact_after_query` are the shares of `<important_info>` spans (before any query, and
after one) whose every token is the greedy prediction: picking the supporting passage. After a search the
candidates are several passages about the same entity, so only reading them against the question tells which
one to keep.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARTS = {"<important_info>": "ids", "<search_complete>": "flag", "<query>": "query"}


def export(out: Path, config: Path, passes: int, noise: float) -> None:
    import torch
    from transformers import AutoTokenizer

    from s3core.config.loader import load_config
    from s3core.models.resolve import resolve_model_path
    from s3core.pipeline import open_store, prepare
    from s3core.retrieval.indexes import open_retriever_by_name
    from s3core.warmstart.stage import oracle_trajectories

    cfg = load_config(config)
    store = open_store(cfg)
    state = prepare(store, cfg, until="bm25_index")
    retriever, docs = open_retriever_by_name(store, cfg, cfg.retrieval.naive_retriever, state.corpus,
                                             state.dense_index, state.bm25_index, state.tiny_models)
    searcher = resolve_model_path("tiny:searcher", store.local_dir(state.tiny_models))
    tokenizer = AutoTokenizer.from_pretrained(searcher)
    query_format = cfg.warmstart.query_format if cfg.warmstart else "text"
    data = {}
    for split, split_passes, split_noise in (("train", passes, noise), ("dev", 1, 0.0)):
        rows = [r for m in state.questions if m.stats.get("split") == split for r in store.read_table(m).to_pylist()]
        rollouts, _ = oracle_trajectories(cfg, tokenizer, rows, retriever, docs, passes=split_passes,
                                          noise=split_noise, seed=0, query_format=query_format, source=f"{split} questions")
        data[split] = [(r.prompt_ids, r.response_ids, r.policy_mask) for r in rollouts]
        print(f"{split}: {len(rollouts)} oracle trajectories of {len(rows)} questions", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(data, out / "trajectories.pt")
    shutil.copytree(searcher, out / "searcher", dirs_exist_ok=True)


def part_labels(response_ids: list[int], policy_mask: list[int], tags: dict[int, str]) -> list[str | None]:
    """The part of the turn each response token belongs to (None for environment tokens)."""
    part, labels = "other", []
    for token, mask in zip(response_ids, policy_mask):
        part = tags.get(token, part)
        labels.append(part if mask else None)
    return labels


def train(data_dir: Path, shape: str, context_weight: float, steps: int, batch_size: int, lr: float,
          device: str, seed: int) -> None:
    """The warm-start stage's own training loop (train_on_examples), evaluated every steps/5."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from s3core.warmstart.sft import IGNORE, Example, collate_examples, train_on_examples

    data = torch.load(data_dir / "trajectories.pt")
    tokenizer = AutoTokenizer.from_pretrained(data_dir / "searcher")
    hidden, layers = (int(x) for x in shape.split("x"))
    config = Qwen2Config.from_pretrained(data_dir / "searcher")
    heads = max(2, hidden // 32)
    config.update({"hidden_size": hidden, "num_hidden_layers": layers, "intermediate_size": 3 * hidden,
                   "num_attention_heads": heads, "num_key_value_heads": heads, "layer_types": ["full_attention"] * layers})
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    tags = {tokenizer.convert_tokens_to_ids(t): part for t, part in PARTS.items()}
    query_tag = tokenizer.convert_tokens_to_ids("<query>")

    def example(t) -> Example:
        prompt, response, mask = t
        return Example(prompt + response, [IGNORE] * len(prompt) + [x if m else IGNORE for x, m in zip(response, mask)])

    def evaluate(trajectories) -> dict:
        model.eval()
        nll: dict[str, list[float]] = {}
        hits, spans = [], []  # query first-token hits; (after a query?, all tokens right) per <important_info> span
        with torch.no_grad():
            for start in range(0, len(trajectories), 16):
                chunk = trajectories[start:start + 16]
                ids, mask, _ = (x.to(device) for x in collate_examples([example(t) for t in chunk], tokenizer.pad_token_id))
                logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)  # [B, T, V]
                for row, (prompt, response, policy) in enumerate(chunk):
                    previous, searched = None, False
                    for j, part in enumerate(part_labels(response, policy, tags)):
                        if part is None or part == "other":
                            previous = part
                            continue
                        at = len(prompt) + j  # token index; predicted at at - 1
                        nll.setdefault(part, []).append(-logp[row, at - 1, ids[row, at]].item())
                        right = int(logp[row, at - 1].argmax().item() == ids[row, at].item())
                        searched |= part == "query"
                        if part == "ids":
                            if previous != "ids":
                                spans.append([searched, 1])
                            spans[-1][1] &= right
                        previous = part
                        if j > 0 and response[j - 1] == query_tag:
                            hits.append(int(logp[row, at - 1].argmax().item() == ids[row, at].item()))
        model.train()
        out = {part: round(sum(v) / len(v), 3) for part, v in sorted(nll.items())}
        out["query_first_acc"] = round(sum(hits) / max(1, len(hits)), 3)
        for name, after in (("ids_exact_first", False), ("ids_exact_after_query", True)):
            chosen = [right for searched, right in spans if searched == after]
            out[name] = round(sum(chosen) / max(1, len(chosen)), 3)
        return out

    started = time.time()

    def report(step: int, total: int, message: str) -> None:
        print(json.dumps({"shape": shape, "context_weight": context_weight, "step": step,
                          "seconds": round(time.time() - started), "dev": evaluate(data["dev"]),
                          "train": evaluate(data["train"][:100])}), flush=True)

    curve = train_on_examples(model, [example(t) for t in data["train"]], tokenizer.pad_token_id, steps=steps,
                              batch_size=batch_size, lr=lr, warmup_fraction=0.05, seed=seed,
                              log_every=max(1, steps // 5), context_weight=context_weight, device=device,
                              progress=report)
    if math.isnan(curve[-1]["loss"]):
        raise SystemExit("the loss is NaN: lower --lr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path, help="write the oracle trajectories of --config to this folder")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "tiny.yaml")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.25)
    parser.add_argument("--data", type=Path, help="a folder written by --export: fine-tune on it")
    parser.add_argument("--shape", default="64x2", help="hidden size x layers of the random-init searcher")
    parser.add_argument("--context-weight", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if bool(args.export) == bool(args.data):
        parser.error("give exactly one of --export FOLDER or --data FOLDER")
    if args.export:
        export(args.export, args.config, args.passes, args.noise)
    else:
        train(args.data, args.shape, args.context_weight, args.steps, args.batch_size, args.lr, args.device, args.seed)


if __name__ == "__main__":
    main()
