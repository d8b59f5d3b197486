"""The options of encoding and decoding, validated in one place.

The Python API (``Codec``, ``encode_to_target``), the command-line tools, the
Ray job and the Pillow plugin all take the same options under the same names;
each builds them with ``EncodeOptions.validated`` / ``CodecOptions.validated``,
so a value is checked (and a conflict refused) the same way everywhere, with
a one-line ``L3icError``.  A validated value is frozen, so it stays valid
while it travels (to worker processes, Ray actors).  ``flags=True`` names the
options as the command-line tools spell them (``--target-bpp``).
"""
import math
import numbers
import os
from dataclasses import dataclass
from typing import Optional

from l3ic.errors import L3icError
from l3ic.image import DEFAULT_MAX_PIXELS
from l3ic.model import DEFAULT_MODEL, QUALITIES
from l3ic.quality import Q_UNITS, model_for, quality_units

PROVIDERS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EncodeOptions:
    """What to encode with: ``model`` (None when ``target_bpp`` searches the quality per image), ``quality`` (q
    0..100 in steps of 0.001, ``l3ic.quality``; None: the model's preset), ``refine`` steps."""

    model: Optional[str] = DEFAULT_MODEL
    quality: Optional[float] = None
    target_bpp: Optional[float] = None
    refine: int = 0

    @classmethod
    def validated(cls, model=None, quality=None, target_bpp=None, refine=0, flags=False):
        """The options a user gave: ``model`` a name or folder; ``quality`` a preset (low, medium, high: that
        model) or q in 0..100 (the model that serves it, or q within ``model``'s range); or ``target_bpp`` (the
        largest file within that rate, searched over q); L3icError for a bad value or a conflict."""
        name = _flag if flags else str
        if model is not None and not (isinstance(model, (str, os.PathLike)) and os.fspath(model)):
            raise L3icError("%s must be a model name or folder, got %r" % (name("model"), model))
        steps = refine_steps(refine, name("refine"))
        if target_bpp is not None:
            if model is not None or quality is not None:
                raise L3icError("%s chooses the model and quality itself: drop %s/%s"
                                % (name("target_bpp"), name("model"), name("quality")))
            return cls(None, None, _target(target_bpp, name("target_bpp")), steps)
        preset = quality.strip().lower() if isinstance(quality, str) else None
        if preset in QUALITIES:  # a preset names its model, encoded at the model's own quality
            if model is not None:
                raise L3icError("give %s or the preset %s %s, not both" % (name("model"), name("quality"), preset))
            return cls(preset, None, None, steps)
        units = None if quality is None else quality_units(quality, name("quality"))
        if units is not None and model is None:
            model = model_for(units)
        return cls(model or DEFAULT_MODEL, None if units is None else units / Q_UNITS, None, steps)


@dataclass(frozen=True)
class CodecOptions:
    """How a ``Codec`` runs: ONNX Runtime ``providers``, the largest image it takes (``max_pixels``, for both
    input images and the sizes files claim) and ONNX Runtime ``threads`` (None: all cores)."""

    providers: object = "auto"  # one of PROVIDERS, or a tuple of ONNX Runtime execution provider names
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: Optional[int] = None

    @classmethod
    def validated(cls, providers=None, max_pixels=DEFAULT_MAX_PIXELS, threads=None, flags=False):
        name = _flag if flags else str
        providers = "auto" if providers is None else providers
        if isinstance(providers, (list, tuple)) and providers and all(isinstance(p, str) for p in providers):
            providers = tuple(providers)
        elif providers not in PROVIDERS:
            raise L3icError("%s must be %s or a list of ONNX Runtime providers, got %r"
                            % (name("provider"), ", ".join(PROVIDERS), providers))
        max_pixels = whole_number(max_pixels, name("max_pixels"), "pixels")
        return cls(providers, max_pixels, None if threads is None else whole_number(threads, name("threads"), "threads"))


def checked_channels(channels, count):
    """The latent channels a decode asks for (an iterable of indices; None: all ``count``), as a list; L3icError
    unless they are distinct indices of the file's channels."""
    if channels is None:
        return list(range(count))
    try:
        wanted = [whole_number(c, "a channel", "channel index", least=0) for c in channels]
    except TypeError:
        raise L3icError("channels must be a list of channel indices, got %r" % (channels,))
    if not wanted or len(set(wanted)) != len(wanted) or min(wanted) < 0 or max(wanted) >= count:
        raise L3icError("channels must be distinct indices in 0..%d" % (count - 1))
    return wanted


def refine_steps(refine, name="refine"):
    """``refine`` as a number of refinement steps (0 = off)."""
    return whole_number(refine, name, "steps", least=0)


def whole_number(value, name, unit, least=1):
    """``value`` as an int >= ``least``; L3icError naming it unless it is an integer (Python or numpy, not a
    bool) that large."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        wanted = "a positive number of %s" % unit if least == 1 else "a number of %s >= %d" % (unit, least)
        raise L3icError("%s must be %s, got %r" % (name, wanted, value))
    return int(value)


def _target(target_bpp, name):
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, numbers.Real) \
            or not math.isfinite(target_bpp) or target_bpp <= 0:
        raise L3icError("%s must be a positive number of bits per pixel, got %r" % (name, target_bpp))
    return float(target_bpp)


def _flag(name):
    """An option's name as the command-line tools spell it: target_bpp -> --target-bpp."""
    return "--" + name.replace("_", "-")
