"""User-facing errors: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


class FiremlipError(Exception):
    """An error caused by the user's input (file, field, value); printed as a single line, exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class InputFileError(FiremlipError):
    """A missing or unreadable input file."""


class ConfigError(FiremlipError):
    """An invalid configuration field (the message starts with its dotted path)."""


def require_file(path: str | os.PathLike[str], what: str = "input file") -> None:
    """Raise :class:`InputFileError` naming ``path`` when it is not an existing file."""

    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputFileError(f"{p}: {what} not found")
    if os.path.isdir(p):
        raise InputFileError(f"{p}: expected a file ({what}), got a directory")


def reject_unknown_fields(cls: type, kw: Mapping[str, Any], where: str, noun: str = "option") -> None:
    """Raise a one-line :class:`FiremlipError` naming the keys of ``kw`` that are not fields of dataclass ``cls``."""
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    bad = sorted(set(kw) - known)
    if bad:
        raise FiremlipError(f"{where}: unknown {noun}(s) {', '.join(bad)} (known: {', '.join(sorted(known))})")
