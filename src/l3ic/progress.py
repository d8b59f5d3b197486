"""Progress of long work, reported by the codec's stages and shown by the command-line tools.

The stages that take long on one file (the encoder's blocks, refinement
steps, the decoder's blocks) call ``step(stage, done, total)``.  Nothing is
shown unless a caller asked for it with ``reporting(callback)``: the library
stays silent, and the ``l3ic`` tools show a bar on a terminal (``Bar``).  The
callback is held in a context variable, so a Ray actor or a thread that did
not ask for progress never sees another's.
"""
import contextlib
import contextvars
import sys
import time

_callback = contextvars.ContextVar("l3ic_progress", default=None)


def step(stage, done, total):
    """Report that ``done`` of ``total`` units of ``stage`` (e.g. "refining") are finished."""
    callback = _callback.get()
    if callback is not None:
        callback(stage, done, total)


@contextlib.contextmanager
def reporting(callback):
    """Within the block, ``step`` calls ``callback(stage, done, total)``."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


class Bar:
    """A one-line progress bar on a terminal's stderr, ``label: stage [#####-----] 3/8``; silent elsewhere.

    It shows only work that has lasted ``delay`` seconds, so quick runs print
    nothing, and ``close`` clears the line for the result that follows.
    """

    WIDTH = 30

    def __init__(self, label, stream=None, delay=0.5, enabled=True):
        self.label, self.stream = label, stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.started, self.delay, self.shown = time.perf_counter(), delay, False

    def __call__(self, stage, done, total):
        if not self.enabled or time.perf_counter() - self.started < self.delay:
            return
        filled = self.WIDTH * done // max(total, 1)
        self.stream.write("\r\033[K%s: %s [%s%s] %d/%d" % (self.label, stage, "#" * filled, "-" * (self.WIDTH - filled),
                                                          done, total))
        self.stream.flush()
        self.shown = True

    def write(self, line):
        """Print a whole line (an error of a batch) without mixing it into the bar."""
        self.stream.write(("\r\033[K" if self.shown else "") + line + "\n")
        self.shown = False

    def close(self):
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False
