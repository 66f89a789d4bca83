"""Text the service accepts and stores: a sequence of Unicode scalar values (no lone UTF-16
surrogate, which JSON's `\\ud800` escapes can carry but UTF-8 cannot encode) without the NUL
character (which PostgreSQL text cannot hold). Every text a request carries is checked
against this rule before it reaches a database, so such a value is a refused request, never
a server error."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "text must not contain the NUL character"
    return "text must be valid Unicode (no lone surrogate)"


def storable(value: str) -> str:
    """`value` with each character that cannot be stored replaced by U+FFFD, for recording
    what a refused request said."""
    return _UNSTORABLE.sub("\ufffd", value)
