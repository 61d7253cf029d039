"""The rule shared by names that people type and others must not impersonate (logins,
role names): only letters of one script, digits, combining marks and a short list of
punctuation. NFKC folds compatibility look-alikes together; it does not fold a Cyrillic
"а" into a Latin "a", so a name that mixes scripts is refused instead."""

from __future__ import annotations

import unicodedata
from enum import Enum


class NameProblem(Enum):
    BAD_CHARACTER = "bad_character"
    MIXED_SCRIPTS = "mixed_scripts"


def name_problem(text: str, punctuation: frozenset[str]) -> NameProblem | None:
    scripts: set[str] = set()
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("L"):
            # The first word of a letter's Unicode name is its script: LATIN, CYRILLIC, ...
            scripts.add(unicodedata.name(char, "UNKNOWN").split(" ")[0])
        elif not (category in ("Nd", "Mn") or char in punctuation):
            return NameProblem.BAD_CHARACTER
    return NameProblem.MIXED_SCRIPTS if len(scripts) > 1 else None
