"""l3ic runtime: encode and decode images with ONNX Runtime, no TensorFlow needed.

Public API::

    from runtime import Codec, read_info, read_latents
    codec = Codec("medium")           # or "low", "high", a model folder; providers="cpu"/"cuda"/"auto"
    data = codec.encode(rgb_uint8)    # numpy (H, W, 3) / (H, W) / (H, W, 4) or a Pillow image -> bytes
    data = codec.encode(rgb_uint8, refine=30)  # slower, ~15 % fewer bits at the same quality (runtime.refine)
    rgb = codec.decode(data)          # -> numpy uint8; channels=[...] decodes a subset of latent channels

The names are imported on first use, so ``import runtime.fse`` or
``runtime.container`` alone does not load ONNX Runtime.
"""
import importlib

_EXPORTS = {
    "Codec": "runtime.codec", "read_info": "runtime.codec", "read_latents": "runtime.codec",
    "L3icError": "runtime.errors", "FormatError": "runtime.errors", "FSEError": "runtime.errors",
    "ImageError": "runtime.errors", "ModelError": "runtime.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'runtime' has no attribute %r" % name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)
