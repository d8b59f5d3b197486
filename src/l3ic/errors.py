"""Exceptions raised by the l3ic runtime.

Every error a user can trigger (bad image, corrupt stream, wrong model) is an
``L3icError`` whose message is a single human-readable line; the command-line
tools print exactly that line and exit non-zero.  Anything else escaping the
runtime is a bug.
"""


class L3icError(Exception):
    """Base class: a user-facing failure.

    Args:
        message: one line that says what is wrong, for the user (the tools print it as ``l3ic: error: ...``).
    """


class ImageError(L3icError):
    """The input image cannot be read or is not supported (``Codec.encode``, the encode tool)."""


class FormatError(L3icError):
    """The bitstream is not a valid l3ic file: truncated, corrupt or of an unknown version (``Codec.decode``,
    ``read_info``, ``read_latents``, ``container.L3icFile.parse``)."""


class FSEError(FormatError):
    """The FSE entropy coder rejected a chunk.

    Args:
        message: the one-line message, naming the chunk and the cause.
        code: the C coder's error code (``l3ic.fse``), which classifies the cause.
    Attributes:
        code: as given.
    """

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


class ModelError(L3icError):
    """A model is missing, damaged, or does not match the bitstream (``Codec``, ``read_latents``)."""


def first_line(message, empty=None):
    """The first line of an error's message, for a one-line error that quotes a library's longer one.

    Args:
        message: an exception or a string.
        empty: what to return when there is no text (default: the exception's type name).
    Returns:
        str: the first non-empty line.
    """
    text = str(message).strip()
    if text:
        return text.splitlines()[0]
    return type(message).__name__ if empty is None else empty
