"""Prompt templates shipped as package data (one `.txt` file per prompt, in our own words).

Templates use `string.Template` placeholders (`$question`, `${answers}`), so braces in the prompt text
(JSON examples, for instance) need no escaping. `load_prompt(name)` returns a `PromptTemplate`; its
`render(**values)` fills every placeholder and names the missing one if a value is absent.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from importlib import resources


class PromptError(KeyError):
    """A prompt file is missing or a placeholder was left without a value."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str

    @property
    def placeholders(self) -> list[str]:
        """Placeholder names in order of first appearance."""
        seen: dict[str, None] = {}
        for match in string.Template.pattern.finditer(self.text):
            key = match.group("named") or match.group("braced")
            if key:
                seen.setdefault(key)
        return list(seen)

    def render(self, **values: object) -> str:
        missing = [key for key in self.placeholders if key not in values]
        if missing:
            raise PromptError(f"prompt {self.name!r} needs a value for placeholder(s) {missing}; got {sorted(values)}")
        return string.Template(self.text).substitute({key: str(value) for key, value in values.items()})


def available_prompts() -> list[str]:
    return sorted(p.name[: -len(".txt")] for p in resources.files(__name__).iterdir() if p.name.endswith(".txt"))


@cache
def load_prompt(name: str) -> PromptTemplate:
    """The template `<name>.txt` of this package."""
    path = resources.files(__name__) / f"{name}.txt"
    if not path.is_file():
        raise PromptError(f"no prompt named {name!r}; available: {available_prompts()}")
    return PromptTemplate(name=name, text=path.read_text(encoding="utf-8"))
