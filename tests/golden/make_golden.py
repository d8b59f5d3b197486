"""Regenerate the golden files that pin cross-platform decoding: ``python tests/golden/make_golden.py``.

Rerun this whenever a shipped model is replaced (``models/medium``: a new
checkpoint changes the decoder hash, the symbols and the pixels), review the
new PSNR it prints, and commit the regenerated files together with the model.
tests/test_golden.py fails with a message pointing here until that is done.

For each case, a small crop of the bundled sample (odd sizes, so that padding
to the stride is exercised; one RGB, one grayscale) is encoded with the
shipped ``medium`` model on the CPU, and this folder receives:

* ``<case>.source.png``  the crop that was encoded;
* ``<case>.l3ic``        the encoded file;
* ``<case>.decoded.png`` what this machine decoded from it;
* ``golden.json``        per case: the model and its decoder's SHA-256, the
  SHA-256 of the .l3ic file, of its latent symbols (``runtime.read_latents``,
  as little-endian int16 in (C, h, w) order) and of the decoded pixels, and
  the PSNR of the decoded image against the source.

The tests require, on every platform: the symbols bit-identical (entropy
decoding is exact integer work), the decoded image within one rounding step
of ``<case>.decoded.png`` (max abs difference <= 1: float convolutions may
round differently on other CPUs, GPUs or ONNX Runtime versions).
"""
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(REPO, "samples", "rose.png")
MODEL = "medium"
CASES = {  # name: (left, top, width, height, mode) of the crop of samples/rose.png
    "rgb": (150, 200, 77, 61, "RGB"),
    "gray": (40, 330, 45, 38, "L"),
    "context": (100, 100, 203, 150, "RGB"),  # large enough that the encoder picks CONTEXT chunks
}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def symbols_sha256(data):
    """SHA-256 of an l3ic file's latent codebook values, as little-endian int16 in (C, h, w) order."""
    from runtime import read_latents
    return sha256(np.ascontiguousarray(read_latents(data), "<i2").tobytes())


def crop(case):
    left, top, width, height, mode = CASES[case]
    with Image.open(SAMPLE) as image:
        return image.convert("RGB").crop((left, top, left + width, top + height)).convert(mode)


def main():
    sys.path.insert(0, REPO)
    from runtime import Codec
    from runtime.image import psnr
    codec = Codec(MODEL, "cpu")
    manifest = codec.model.manifest
    golden = {"model": MODEL, "decoder_sha256": manifest["files"]["decoder.onnx"]["sha256"],
              "encoder_sha256": manifest["files"]["encoder.onnx"]["sha256"], "cases": {}}
    for case in CASES:
        source = crop(case)
        source.save(os.path.join(HERE, case + ".source.png"))
        data = codec.encode(source)
        with open(os.path.join(HERE, case + ".l3ic"), "wb") as f:
            f.write(data)
        decoded = codec.decode(data)
        Image.fromarray(decoded).save(os.path.join(HERE, case + ".decoded.png"))
        golden["cases"][case] = {
            "width": source.width, "height": source.height, "mode": source.mode,
            "l3ic_sha256": sha256(data), "l3ic_bytes": len(data),
            "symbols_sha256": symbols_sha256(data),
            "decoded_sha256": sha256(np.ascontiguousarray(decoded).tobytes()),
            "psnr": round(psnr(np.asarray(source), decoded), 4),
        }
        print("%s: %dx%d %s, %d bytes, PSNR %.2f dB" % (case, source.width, source.height, source.mode, len(data),
                                                       golden["cases"][case]["psnr"]))
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
