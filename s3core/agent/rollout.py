"""The batched multi-turn rollout engine (DESIGN.md section 2 "Searcher protocol"; section 3 "Searcher rollouts").

Many trajectories advance together: in every turn the policy continues all active ones in one batch, every
query of that turn goes to the retriever as ONE batch (in-process, or one request to the retrieval server),
and each trajectory gets its observation appended. Per trajectory the engine keeps

- the environment's record (context.TrajectoryRecord): blocks of DocStore rows, queries, tags, turns;
- the tokens: prompt ids, then everything after them (policy and environment tokens interleaved), with
  `policy_mask` 1 on tokens the policy sampled and 0 on environment tokens (state masking for PPO), and the
  sampling log-prob of every policy token (0.0 on environment tokens).

How turns count (s3 defaults "8-3-3": initial_topk 3, topk 8, max_selected 3, max_searches 3): the initial
retrieval with the question is not a turn; each policy reply is one turn, invalid ones included; a query is
searched only while fewer than `max_searches` searches were made and never on the last turn (`max_turns`;
s3: max_searches + 1, so the last turn can still tag the last block). A query that is not searched counts
its turn and ends the trajectory (`unexecuted_queries`): the searcher would never see what it retrieved, so
nothing is retrieved. A trajectory also ends when the policy stops, when an invalid turn gets no corrective
observation, or when the next turn would pass `max_context_tokens`. An observation longer than
`max_obs_tokens` is cut to that many tokens, and the block records how many docs the searcher saw whole
(`InfoBlock.shown`): only those can be tagged or enter the context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from s3core.agent.context import InfoBlock, TrajectoryRecord, doc_line, format_docs
from s3core.agent.sampling import Policy, SamplingSettings
from s3core.agent.strategies import PolicyStrategy
from s3core.retrieval.base import DocStore

SearchFn = Callable[[list[str], int], list[list[int]]]  # queries, topk -> DocStore rows per query, best first


@dataclass
class Rollout:
    """One trajectory: the record (for the context) and the tokens (for training)."""

    record: TrajectoryRecord
    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)  # [R] policy and environment tokens after the prompt
    policy_mask: list[int] = field(default_factory=list)   # [R] 1 = sampled by the policy, 0 = environment
    logprobs: list[float] = field(default_factory=list)    # [R] sampling log-prob (0.0 on environment tokens)
    transcript: str = ""                                    # decoded response (debugging, public_code rule)
    done: bool = False

    @property
    def policy_tokens(self) -> int:
        return sum(self.policy_mask)

    @property
    def env_tokens(self) -> int:
        return len(self.policy_mask) - self.policy_tokens

    def extend(self, tokens: Sequence[int], from_policy: bool, logprobs: Sequence[float] | None = None) -> None:
        self.response_ids.extend(tokens)
        self.policy_mask.extend([1 if from_policy else 0] * len(tokens))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(tokens))


def retriever_search(retriever) -> SearchFn:
    """A SearchFn over an in-process retriever (s3core.retrieval)."""
    return lambda queries, topk: [[hit.row for hit in hits] for hits in retriever.search(queries, topk)]


def client_search(client, docs: DocStore, index: str | None = None) -> SearchFn:
    """A SearchFn over the retrieval server: one request per call, ids mapped back to DocStore rows."""
    def search(queries: list[str], topk: int) -> list[list[int]]:
        return [[docs.row_of(doc.id) for doc in hits] for hits in client.search_sync(queries, topk, index=index)]
    return search


class RolloutEngine:
    def __init__(self, policy: Policy, strategy: PolicyStrategy, search: SearchFn, docs: DocStore,
                 sampling: SamplingSettings, max_obs_tokens: int, max_context_tokens: int):
        self.policy, self.strategy, self.search, self.docs = policy, strategy, search, docs
        self.tokenizer = policy.tokenizer
        self.sampling = SamplingSettings(sampling.max_new_tokens, sampling.temperature, sampling.top_p,
                                         strategy.stop_strings, sampling.seed)
        self.max_obs_tokens, self.max_context_tokens = max_obs_tokens, max_context_tokens

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def start(self, questions: Sequence[str]) -> list[Rollout]:
        """Initial retrieval (one batch) and the prompt of every trajectory."""
        limits = self.strategy.limits
        initial = self.search(list(questions), limits.initial_topk) if limits.initial_topk else [[] for _ in questions]
        rollouts = []
        for question, rows in zip(questions, initial):
            record = TrajectoryRecord(question=question)
            if rows:
                record.blocks.append(InfoBlock(rows=tuple(rows), query=None))
            message = self.strategy.first_message(question, format_docs(self.docs, rows))
            prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                        add_generation_prompt=True)
            rollouts.append(Rollout(record=record, prompt_ids=self.encode(prompt)))
        return rollouts

    def run(self, questions: Sequence[str]) -> list[Rollout]:
        rollouts = self.start(questions)
        for turn in range(self.strategy.limits.max_turns):
            active = [r for r in rollouts if not r.done and self._room_for_a_turn(r)]
            if not active:
                break
            self._turn(active, turn + 1)
        for r in rollouts:
            if not r.done:
                r.done = True
                r.record.end_reason = r.record.end_reason or ("turn_limit" if self._room_for_a_turn(r) else "context_limit")
            r.transcript = self.tokenizer.decode(r.response_ids, skip_special_tokens=False)
        return rollouts

    def _room_for_a_turn(self, r: Rollout) -> bool:
        return len(r.prompt_ids) + len(r.response_ids) + self.sampling.max_new_tokens <= self.max_context_tokens

    def _turn(self, active: list[Rollout], turn: int) -> None:
        outputs = self.policy.continue_sequences([r.prompt_ids + r.response_ids for r in active], self.sampling)
        wanted: list[tuple[Rollout, str]] = []
        limits = self.strategy.limits
        last_turn = turn == limits.max_turns
        for r, out in zip(active, outputs):
            r.extend(out.tokens, from_policy=True, logprobs=out.logprobs)
            record = r.record
            record.turns = turn
            latest = record.blocks[-1].size if record.blocks else 0
            step = self.strategy.read_turn(self.tokenizer.decode(out.tokens, skip_special_tokens=True), latest)
            record.forged_information += int(step.forged_information)
            if step.selected is not None and self.strategy.tags_blocks():
                record.tag_latest(step.selected)
            if not step.valid:
                record.invalid_turns += 1
                corrective = self.strategy.invalid_observation()
                if corrective is None or last_turn:
                    r.done, record.end_reason = True, "no_action" if corrective is None else "turn_limit"
                else:
                    r.extend(self.encode(corrective), from_policy=False)
                continue
            if step.stop:
                r.done, record.stopped, record.end_reason = True, True, "stop"
                if step.query is not None and self._may_search(record, last_turn):
                    wanted.append((r, step.query))  # a stop that carries its search (DeepRetrieval's rewrite)
                continue
            if step.query is None:  # valid without a query or a stop: nothing to do, the search ends
                r.done, record.end_reason = True, "turn_limit"
                continue
            if not self._may_search(record, last_turn):
                record.unexecuted_queries += 1
                r.done, record.end_reason = True, "turn_limit" if last_turn else "search_limit"
                continue
            wanted.append((r, step.query))
        self._search_and_observe(wanted)

    def _may_search(self, record: TrajectoryRecord, last_turn: bool) -> bool:
        """A query is searched only before the last turn and while searches remain."""
        return not last_turn and len(record.queries) < self.strategy.limits.max_searches

    def _search_and_observe(self, wanted: list[tuple[Rollout, str]]) -> None:
        """All of this turn's queries as one search batch; each trajectory gets its block and observation."""
        if not wanted:
            return
        results = self.search([query for _, query in wanted], self.strategy.limits.topk)
        for (r, query), rows in zip(wanted, results):
            block = InfoBlock(rows=tuple(rows), query=query)
            r.record.blocks.append(block)
            if not r.done:
                observation = self.encode(self.strategy.observation(format_docs(self.docs, rows)))
                if len(observation) > self.max_obs_tokens:
                    observation = observation[: self.max_obs_tokens]
                    block.shown = self._docs_seen_whole(rows, observation)
                r.extend(observation, from_policy=False)

    def _docs_seen_whole(self, rows: Sequence[int], observation: Sequence[int]) -> int:
        """How many leading docs of a cut observation the searcher saw in full."""
        text = self.tokenizer.decode(list(observation), skip_special_tokens=False)
        shown, position = 0, 0
        for number, row in enumerate(rows, start=1):
            found = text.find(doc_line(self.docs, row, number), position)
            if found < 0:
                break
            shown, position = number, found
        return shown
