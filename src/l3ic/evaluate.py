"""Rate-distortion of one l3ic model on images, through the real runtime.

bpp counts every byte of the ``.l3ic`` file (header, index, checksums); quality
is measured on the decoded uint8 image.  Used by ``export.to_onnx`` to record
a model's RD in its manifest; ``benchmarks.rd`` compares it with other codecs.
"""
import os
import time

import numpy as np

from l3ic import image as images
from l3ic.codec import Codec
from l3ic.metrics import ms_ssim, psnr


def evaluate_image(model, path, codec=None, refine=0):
    """bytes, bpp, PSNR, MS-SSIM and encode/decode seconds of one image (``refine``: refinement steps)."""
    codec = codec or Codec(model, "cpu")
    picture = images.load(path, strip=True)
    start = time.perf_counter()
    data = codec.encode(picture, refine=refine)
    encoded = time.perf_counter()
    decoded = np.asarray(codec.decode_to_pil(data).convert(picture.mode))
    done = time.perf_counter()
    original = picture.pixels
    return {
        "image": os.path.basename(path), "bytes": len(data),
        "bpp": 8.0 * len(data) / (picture.width * picture.height),
        "psnr": psnr(original, decoded), "ms_ssim": ms_ssim(original, decoded),
        "encode_s": encoded - start, "decode_s": done - encoded,
    }


def evaluate_folder(model, folder, limit=None, refine=0):
    """Mean bpp / PSNR / MS-SSIM over the images of a folder (each image weighted equally; ImageError if none)."""
    codec = Codec(model, "cpu")
    results = [evaluate_image(model, p, codec, refine) for p in images.list_images(folder, required=True)[:limit]]
    mean = lambda key: float(np.mean([r[key] for r in results if r[key] is not None]))
    return {"images": len(results), "bpp": mean("bpp"), "psnr": mean("psnr"), "ms_ssim": mean("ms_ssim")}
