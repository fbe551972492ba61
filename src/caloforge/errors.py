"""Exceptions that the command line turns into one clear line and an exit code."""

from __future__ import annotations


class CaloforgeError(Exception):
    """Base class for errors caloforge reports to the user without a traceback."""

    exit_code = 1


class UserError(CaloforgeError):
    """Bad input from the user: missing or corrupt file, wrong shape or key, bad energy...

    The message should name the file (if any) and the problem. The CLI exits with code 2.
    """

    exit_code = 2


class NoPassError(CaloforgeError):
    """A search finished without any configuration meeting its criterion (CLI exit code 3)."""

    exit_code = 3
