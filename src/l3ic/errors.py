"""Exceptions raised by the l3ic runtime.

Every error a user can trigger (bad image, corrupt stream, wrong model) is an
``L3icError`` whose message is a single human-readable line; the command-line
tools print exactly that line and exit non-zero.  Anything else escaping the
runtime is a bug.
"""


class L3icError(Exception):
    """Base class: a user-facing failure with a one-line message."""


class ImageError(L3icError):
    """The input image cannot be read or is not supported."""


class FormatError(L3icError):
    """The bitstream is not a valid l3ic file (truncated, corrupt, wrong version)."""


class FSEError(FormatError):
    """The FSE entropy coder rejected its input; ``code`` is the C error code."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


class ModelError(L3icError):
    """A model is missing, damaged, or does not match the bitstream."""
