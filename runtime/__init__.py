"""l3ic runtime: encode and decode images with ONNX Runtime, no TensorFlow needed.

Public API::

    from runtime import Codec, read_info, read_latents
    codec = Codec("medium")           # or "low", "high", a model folder; providers="cpu"/"cuda"/"auto"
    data = codec.encode(rgb_uint8)    # numpy (H, W, 3) / (H, W) / (H, W, 4) or a Pillow image -> bytes
    rgb = codec.decode(data)          # -> numpy uint8; channels=[...] decodes a subset of latent channels
"""
from runtime.codec import Codec, read_info, read_latents
from runtime.errors import FormatError, FSEError, ImageError, L3icError, ModelError

__all__ = ["Codec", "read_info", "read_latents", "L3icError", "FormatError", "FSEError", "ImageError", "ModelError"]
