"""Exceptions raised by ratiofactory.

Every error a user can cause derives from :class:`RatiofactoryError` and its message
names the place (JSON pointer, file, event index) and what was expected, on one line.

>>> err = InvalidSpecification("expected a number, got 'abc'", pointer="/unbinned_channels/0/samples/1/yield")
>>> str(err)
"/unbinned_channels/0/samples/1/yield: expected a number, got 'abc'"
"""

from __future__ import annotations

__all__ = [
    "DigestMismatch",
    "InvalidEvents",
    "InvalidExpression",
    "InvalidFile",
    "InvalidModel",
    "InvalidONNXModel",
    "InvalidOutput",
    "InvalidSpecification",
    "NegativeAsimovWeights",
    "RatiofactoryError",
    "UnsafePath",
]


class RatiofactoryError(Exception):
    """Base class of all errors caused by user input."""


class InvalidSpecification(RatiofactoryError, ValueError):
    """The workspace JSON breaks the schema or a rule the schema cannot express.

    ``pointer`` is the JSON pointer (RFC 6901) of the offending value; ``source`` the file
    (or ``<stdin>``) when known, named first.
    """

    def __init__(self, message: str, pointer: str = "", *, source: str = "") -> None:
        self.pointer = pointer
        self.message = message
        self.source = source
        place = f"{source}: {pointer}" if source and pointer else source or pointer or "/"
        super().__init__(f"{place}: {message}")


class InvalidFile(RatiofactoryError, OSError):
    """A file referenced by the workspace is missing, unreadable or malformed."""


class UnsafePath(InvalidFile):
    """A file reference would resolve outside the workspace directory."""


class DigestMismatch(InvalidFile):
    """A file's sha256 digest differs from the one recorded in the workspace."""


class InvalidEvents(InvalidFile):
    """An event file lacks a column, holds non-finite values or pickled objects."""


class InvalidONNXModel(InvalidFile):
    """An ONNX ratio model does not fit the channel or produced unusable values."""


class InvalidExpression(RatiofactoryError, ValueError):
    """A formula expression uses something outside the whitelisted language.

    ``pointer`` is the JSON pointer of the expression ("" when parsed on its own)."""

    pointer: str = ""


class InvalidModel(RatiofactoryError, ValueError):
    """The workspace is valid JSON but does not describe a consistent model
    (conflicting shared parameters, missing observations, duplicate names...)."""


class InvalidOutput(RatiofactoryError, ValueError):
    """An output path the tool cannot write as asked (e.g. a plot extension matplotlib
    has no writer for)."""


class NegativeAsimovWeights(InvalidModel):
    """The density s(x;θ) is negative on reference events, so the Asimov weights
    w^ref·s would be negative: no Asimov data (or toys) exist at that θ.

    ``channel``, ``sample`` (the one whose negative term dominates at the first such
    event) and ``events`` (the first reference-event indices) say where.
    """

    def __init__(self, message: str, *, channel: str = "", sample: str = "", events: list[int] | None = None):
        self.channel, self.sample, self.events = channel, sample, list(events or [])
        super().__init__(message)
