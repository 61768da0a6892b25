"""Registry names: turn a user-given name into an Enum member, or fail with the list of valid names."""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


def member_by_value(kind: type[E], name: str, what: str) -> E:
    """`kind(name)`; a ValueError naming `what` and every valid value if there is no such member."""
    try:
        return kind(name)
    except ValueError:
        valid = ", ".join(repr(member.value) for member in kind)
        raise ValueError(f"unknown {what} {name!r}: valid names are {valid}") from None
