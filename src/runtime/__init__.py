"""``runtime``: l3ic's first import name, kept for ``python -m runtime.encode`` / ``decode`` / ``info`` (the
documented interface on a Jetson) and for code written against it.  It is the same API as ``l3ic``, which is
the name to use in applications: a folder called ``runtime/`` in a project would shadow this one.
"""
import l3ic

__version__ = l3ic.__version__
__all__ = l3ic.__all__


def __getattr__(name):
    return getattr(l3ic, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
