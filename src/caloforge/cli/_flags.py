"""Library errors name parameters (``n_events``, ``resume=True``); the command line names its
flags. :func:`flag_words` rewrites a library message in a command's flags."""

from __future__ import annotations

import re
from collections.abc import Mapping

from caloforge.errors import UserError


def flag_words(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with each whole-word parameter name of ``flags`` replaced by its flag."""
    if not flags:
        return message
    pattern = "|".join(rf"(?<![\w-]){re.escape(k)}(?![\w=])"
                       for k in sorted(flags, key=len, reverse=True))
    return re.sub(pattern, lambda m: flags[m.group(0)], message)


def reworded(exc: UserError, flags: Mapping[str, str]) -> UserError:
    """A UserError like ``exc`` whose message speaks in ``flags``."""
    new = UserError(flag_words(str(exc), flags))
    new.exit_code = exc.exit_code
    return new
