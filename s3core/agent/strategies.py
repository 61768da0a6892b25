"""Searcher strategies: s3 and the paper's baselines as policies of one rollout engine (DESIGN.md section 2,
"Searcher protocol", "Baselines").

A strategy says how a trajectory starts (prompt, initial retrieval), how one turn of policy text is read
(`read_turn` -> `Step`), what the environment answers, and when it ends. The engine (rollout.py) does the
rest the same way for all of them: batching, retrieval, token bookkeeping, the trajectory record, and the
final context, which is always built from the record (context.py), never from decoded text.

    strategy       tags the policy writes                         observation              context
    s3             <query>{json}</query>, <important_info>,        <information> Doc 1..k   tagged docs, else whole
                   <search_complete>                               block (k = topk_per_query)  blocks (context.py)
    search_r1      <search>q</search>, <answer>..</answer> = stop  <information> Doc 1..k   every retrieved doc
    search_o1      <|begin_search_query|>q<|end_search_query|>;   <|begin_search_result|>  every retrieved doc
                   a turn without a query ends it                  .. <|end_search_result|>
    ircot          one reasoning sentence per turn = the next      the new passages         every retrieved doc
                   query; "answer is" ends it
    deepretrieval  <answer>{"query": ..}</answer>, one turn       none (one search, BM25)  the retrieved docs

Policy-free strategies (no model): `naive` (top-k of the question itself, dense or BM25), `direct` and `cot`
(no retrieval, empty context; the generator prompt differs at evaluation).

Deliberate simplifications, stated: Search-o1's "reason in documents" step (a second model call that
condenses the results) is not run, the raw results are shown; IRCoT appends each round's new passages after
the sentence instead of rebuilding the prompt with all passages so far (same information, one growing
sequence, so the same token bookkeeping serves every strategy).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from s3core.agent.protocol import CORRECTIVE_OBSERVATION, parse_query, parse_turn, strip_forged_information, tag_body
from s3core.prompts import load_prompt
from s3core.registry import member_by_value


@dataclass(frozen=True)
class Step:
    """What the engine does after one policy turn."""

    query: str | None = None               # search for this (if searches remain)
    stop: bool = False                     # end the trajectory after this turn
    selected: tuple[int, ...] | None = None  # tag the latest block with these 1-based ids (s3 only)
    valid: bool = True
    forged_information: bool = False


@dataclass(frozen=True)
class Limits:
    """Per-trajectory limits (searcher config for s3, the baselines' own settings otherwise)."""

    initial_topk: int        # passages retrieved with the question itself before turn 1 (0 = none)
    topk: int                # passages per search
    max_searches: int        # searches after the initial retrieval
    max_turns: int           # policy turns, invalid ones included
    max_selected: int = 3    # s3: ids kept per <important_info>


class PolicyStrategy:
    """Base of the strategies the policy model drives; subclasses read turns and format observations."""

    name = ""
    prompt_name = ""
    stop_strings: tuple[str, ...] = ()
    observation_open, observation_close = "\n<information>\n", "\n</information>\n"

    def __init__(self, limits: Limits, prompt: str | None = None):
        self.limits = limits
        if prompt is not None:
            self.prompt_name = prompt  # another template of the same protocol (SearcherConfig.prompt)

    def first_message(self, question: str, initial_information: str) -> str:
        values = {"question": question, "information": initial_information,
                  "max_selected": self.limits.max_selected, "max_searches": self.limits.max_searches}
        template = load_prompt(self.prompt_name)
        return template.render(**{k: v for k, v in values.items() if k in template.placeholders})

    def read_turn(self, text: str, latest_block_size: int) -> Step:
        raise NotImplementedError

    def observation(self, information: str) -> str:
        return f"{self.observation_open}{information}{self.observation_close}"

    def invalid_observation(self) -> str | None:
        """What the environment answers to an invalid turn (None: the trajectory ends)."""
        return None

    def tags_blocks(self) -> bool:
        """True if the policy selects docs of blocks (s3); otherwise every retrieved doc is context."""
        return False


class S3Strategy(PolicyStrategy):
    name = "s3"
    prompt_name = "searcher_s3"
    # A turn ends after its query, or after a stop flag that says True. Not after every </search_complete>: the
    # prompt's order is important_info, search_complete, query, so `False</search_complete>` is followed by the
    # turn's query, and stopping there would make every searching turn invalid (only a model that writes the
    # flag after the query, or EOS, escaped this). Other spellings of a True flag end at EOS or max_new_tokens.
    stop_strings = ("</query>", "<search_complete>True</search_complete>", "<search_complete>true</search_complete>")

    def read_turn(self, text: str, latest_block_size: int) -> Step:
        action = parse_turn(text, latest_block_size, self.limits.max_selected)
        has_tag = tag_body(strip_forged_information(text)[0], "important_info") is not None
        return Step(query=action.query, stop=action.stop, selected=action.selected if has_tag else None,
                    valid=action.valid, forged_information=action.forged_information)

    def invalid_observation(self) -> str | None:
        return CORRECTIVE_OBSERVATION

    def tags_blocks(self) -> bool:
        return True


class SearchR1Strategy(PolicyStrategy):
    name = "search_r1"
    prompt_name = "searcher_search_r1"
    stop_strings = ("</search>", "</answer>")

    def read_turn(self, text: str, latest_block_size: int) -> Step:
        text, forged = strip_forged_information(text)
        if tag_body(text, "answer") is not None:
            return Step(stop=True, forged_information=forged)
        body = tag_body(text, "search")
        query = parse_query(body) if body is not None else None
        return Step(query=query, stop=query is None, valid=query is not None, forged_information=forged)


class SearchO1Strategy(PolicyStrategy):
    name = "search_o1"
    prompt_name = "searcher_search_o1"
    stop_strings = ("<|end_search_query|>",)
    observation_open, observation_close = "\n<|begin_search_result|>\n", "\n<|end_search_result|>\n"

    def read_turn(self, text: str, latest_block_size: int) -> Step:
        text = text.split("<|begin_search_result|>", 1)[0]  # results are the environment's to write
        match = re.search(r"<\|begin_search_query\|>(.*?)<\|end_search_query\|>", text, re.S)
        query = match.group(1).strip() if match else None
        return Step(query=query or None, stop=not query)


class IRCoTStrategy(PolicyStrategy):
    name = "ircot"
    prompt_name = "searcher_ircot"
    stop_strings = ("\n",)
    observation_open, observation_close = "\nPassages:\n", "\n"
    ANSWER_MARK = re.compile(r"answer is", re.I)

    def read_turn(self, text: str, latest_block_size: int) -> Step:
        sentence = text.strip()
        if not sentence:
            return Step(stop=True, valid=False)
        if self.ANSWER_MARK.search(sentence):
            return Step(stop=True)
        return Step(query=sentence)


class DeepRetrievalStrategy(PolicyStrategy):
    name = "deepretrieval"
    prompt_name = "searcher_deepretrieval"
    stop_strings = ("</answer>",)

    def read_turn(self, text: str, latest_block_size: int) -> Step:
        body = tag_body(text, "answer")
        query = parse_query(body) if body is not None else None
        return Step(query=query, stop=True, valid=query is not None)


class StrategyName(str, enum.Enum):
    S3 = "s3"
    SEARCH_R1 = "search_r1"
    SEARCH_O1 = "search_o1"
    IRCOT = "ircot"
    DEEPRETRIEVAL = "deepretrieval"
    NAIVE = "naive"
    DIRECT = "direct"
    COT = "cot"


POLICY_STRATEGIES: dict[StrategyName, type[PolicyStrategy]] = {
    StrategyName.S3: S3Strategy,
    StrategyName.SEARCH_R1: SearchR1Strategy,
    StrategyName.SEARCH_O1: SearchO1Strategy,
    StrategyName.IRCOT: IRCoTStrategy,
    StrategyName.DEEPRETRIEVAL: DeepRetrievalStrategy,
}
POLICY_FREE = (StrategyName.NAIVE, StrategyName.DIRECT, StrategyName.COT)


def strategy_name(name: str) -> StrategyName:
    return member_by_value(StrategyName, name, "searcher strategy")


def make_strategy(name: str, limits: Limits, prompt: str | None = None) -> PolicyStrategy:
    """The policy-driven strategy `name` (a registry lookup; policy-free ones have no policy strategy), with its
    own prompt template unless `prompt` names another."""
    key = strategy_name(name)
    if key in POLICY_FREE:
        raise ValueError(f"strategy {name!r} runs without a policy model; it has no rollout strategy")
    return POLICY_STRATEGIES[key](limits, prompt)
