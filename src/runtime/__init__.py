"""``runtime``: l3ic's first import name, kept for ``python -m runtime.encode`` / ``decode`` / ``info`` (the
documented interface on a Jetson) and for code using its top-level API (``from runtime import Codec``).  Only
those are kept: the submodules live in ``l3ic`` (``l3ic.pillow``, ``l3ic.batch_ray``, ...), which is the name to
use in applications, since a folder called ``runtime/`` in a project would shadow this one.
"""
import l3ic

__version__ = l3ic.__version__
__all__ = l3ic.__all__


def __getattr__(name):
    return getattr(l3ic, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
