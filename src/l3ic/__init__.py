"""l3ic: encode and decode images with ONNX Runtime, no TensorFlow needed.

Public API::

    import l3ic
    codec = l3ic.Codec("medium")      # or "low", "high", a model folder; providers="cpu"/"cuda"/"auto"
    data = codec.encode(rgb_uint8)    # numpy (H, W, 3) / (H, W) / (H, W, 4), a Pillow image or a path -> bytes
    data = codec.encode(rgb_uint8, quality=57.5)  # q 0..100 within codec.quality_range (l3ic.quality)
    data = codec.encode(rgb_uint8, refine=30)  # slower: a better image in the same size (l3ic.refine)
    rgb = codec.decode(data)          # -> numpy uint8; channels=[...] decodes a subset of latent channels

The names are imported on first use, so ``import l3ic.fse`` or
``l3ic.container`` alone does not load ONNX Runtime.  The older import name
``runtime`` (``python -m runtime.encode``) is the same API.
"""
import importlib

__version__ = "0.9.0"

_EXPORTS = {
    "Codec": "l3ic.codec", "read_info": "l3ic.reader", "read_latents": "l3ic.reader",
    "L3icError": "l3ic.errors", "FormatError": "l3ic.errors", "FSEError": "l3ic.errors",
    "ImageError": "l3ic.errors", "ModelError": "l3ic.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'l3ic' has no attribute %r" % name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
