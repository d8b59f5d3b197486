"""Regenerate the golden files that pin cross-platform decoding: ``python tests/golden/make_golden.py`` (``--help``).

Rerun this whenever a shipped model is replaced (``models/medium``: a new
checkpoint changes the decoder hash, the symbols and the pixels), review the
new PSNR it prints, and commit the regenerated files together with the model.
tests/test_golden.py fails with a message pointing here until that is done.

For each case, a small crop of the bundled sample (odd sizes, so that padding
to the stride is exercised; one RGB, one grayscale) is encoded with one of
the shipped models on the CPU (``medium`` for most; every model has cases,
the ``high`` ones up to the top of its grid, where its wide codebook and a
quality field above 100 are used), and this folder receives:

* ``<case>.source.png``  the crop that was encoded;
* ``<case>.l3ic``        the encoded file;
* ``<case>.decoded.png`` what this machine decoded from it;
* ``golden.json``        per model the SHA-256 of its encoder, decoder and
  entropy model; per case its model, the SHA-256 of the .l3ic file, of its latents
  (``l3ic.read_latents``, little-endian int16 in (C, h, w) order; in a
  file coded about the hyperprior's mean, whose latents are quarters, 4 times
  them as int32), of everything that decides how its symbols decode
  (``entropy_sha256``: the ẑ symbols, then per tile the table-index map, the
  origin map and the decoded symbols, likewise) and of the decoded pixels,
  and the PSNR against the source.

The tests require, on every platform: the latents, ẑ, index maps and symbols
bit-identical (entropy decoding and the hyper-synthesis are exact integer
work), the decoded image within one rounding step of ``<case>.decoded.png``
(max abs difference <= 1: float convolutions may round differently on other
CPUs, GPUs or ONNX Runtime versions).

``format2/`` holds the golden files of the format-2 release, ``l3ic-0.3/``
those of the first format-3 models (before continuous quality),
``l3ic-0.4/`` those of 0.4.0 (before whole-image encodes were padded to whole
ẑ cells), ``l3ic-0.4.1/`` those of 0.4.1-0.4.2 (the gains before
``export.fit_gains``), ``l3ic-0.4.3/`` those of 0.4.3 (the hyperprior and
tables before l3ic 0.5), ``l3ic-0.5/`` those of 0.5 (before ẑ could have a
table of its own), ``l3ic-0.7/`` the high model's of 0.7 (its codebook of
32 values) and ``l3ic-0.8/`` four cases of 0.8 (latents rounded to integers,
before ``container.FLAG_MEAN_SHIFT``), frozen: they must keep decoding (through the
legacy decoders in ``models/legacy`` where the decoder changed).  The
``quality`` case is coded at a quality between two of the model's grid
points, so its index maps pin the integer interpolation of the gains.
"""
import hashlib
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(REPO, "samples", "rose.png")
CASES = {  # name: (model, left, top, width, height, mode, the model's own q or None: the preset) of a crop of
    # samples/rose.png
    "rgb": ("medium", 150, 200, 77, 61, "RGB", None),
    "gray": ("medium", 40, 330, 45, 38, "L", None),
    "large": ("medium", 100, 100, 203, 150, "RGB", None),
    "small": ("medium", 200, 260, 40, 13, "RGB", None),  # under 17 px on one axis: a file with a margin
    # (FLAG_MARGIN); a smaller photo crop is stored losslessly since l3ic 0.6
    "quality": ("medium", 120, 280, 64, 40, "RGB", 53.33),  # between grid points of the medium model's gains
    "smooth": ("medium", 0, 0, 384, 512, "RGB", None),  # the sample blurred (SMOOTH_BLUR): its ẑ has a table of its own
    "low": ("low", 60, 120, 96, 72, "RGB", None),
    "high": ("high", 150, 180, 91, 67, "RGB", None),
    "high-top": ("high", 0, 0, 256, 192, "RGB", "top"),  # the top of its grid, blurred: the finest steps
}
SMOOTH_BLUR = {"smooth": 8, "high-top": 4}  # Gaussian blur radius of a case's source: a defocused photo


def model_of(case):
    return CASES[case][0]


def quality_of(case):
    """The -q that codes a case at its model's own q (``l3ic.quality.from_model``; "top": the top of its grid), or
    None for the preset."""
    from l3ic.model import Model
    from l3ic.quality import Q_UNITS, QUALITY_SCALE, from_model
    own = CASES[case][6]
    if own == "top":
        return Model(model_of(case), "cpu").quality_range[1]
    return None if own is None else from_model(model_of(case), round(own * QUALITY_SCALE)) / Q_UNITS


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def symbols_sha256(data):
    """SHA-256 of an l3ic file's latent values (``l3ic.read_latents``), as little-endian int16 in (C, h, w) order;
    those of a mean-shifted file (quarters) times 4, as int32."""
    from l3ic import container, read_latents
    values = read_latents(data)
    if container.L3icFile.parse(data).header.mean_shifted:
        return sha256(np.ascontiguousarray(4 * values, "<i4").tobytes())
    return sha256(np.ascontiguousarray(values, "<i2").tobytes())


def entropy_sha256(data):
    """SHA-256 of what decides how a format-3 file's symbols decode: ẑ, then per tile the index map, the base
    map, the chunks' modes and the decoded latent values."""
    from l3ic import container
    from l3ic.entropy.conditional import ConditionalCoder, tile_values
    from l3ic.model import Model, find_decoder
    parsed = container.L3icFile.parse(data)
    h = parsed.header
    model = Model(find_decoder(h.model_name, h.decoder_hash), "cpu")
    em = model.entropy_model
    z = ConditionalCoder(model).decode_z(parsed)
    gain = model.gain_of(h)
    digest = hashlib.sha256(np.ascontiguousarray(z).tobytes())
    scale = em.phases if h.mean_shifted else 1  # a mean-shifted file's origins and ŷ are quarters: hashed x 4
    for t in range(h.n_tiles):
        origin, index = em.tile_origins(z, h.tile_rect(t), gain, h.mean_shifted)
        chunks = parsed.tile_chunks(t)
        values = tile_values(em, chunks, origin, index, h.codebook_min, h.codebook_size, h.mean_shifted)
        for array in (index, (scale * origin).astype("<i4"), chunks.modes,
                      (scale * values).astype("<i4" if h.mean_shifted else "<i2")):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def crop(case):
    from PIL import ImageFilter
    _, left, top, width, height, mode, _ = CASES[case]
    with Image.open(SAMPLE) as image:
        source = image.convert("RGB").crop((left, top, left + width, top + height))
    if case in SMOOTH_BLUR:
        source = source.filter(ImageFilter.GaussianBlur(SMOOTH_BLUR[case]))
    return source.convert(mode)


def main(argv=None):
    import argparse
    argparse.ArgumentParser(prog="python tests/golden/make_golden.py",
                            description="Regenerate the format-3 golden files in tests/golden/ with the shipped "
                                        "models (see this script's docstring).").parse_args(argv)
    from l3ic import Codec
    from l3ic.image import psnr
    codecs = {name: Codec(name, "cpu") for name in sorted({model_of(case) for case in CASES})}
    golden = {"models": {name: model_hashes(codec.model.manifest) for name, codec in codecs.items()}, "cases": {}}
    for case in CASES:
        codec, source = codecs[model_of(case)], crop(case)
        source.save(os.path.join(HERE, case + ".source.png"))
        data = codec.encode(source, quality=quality_of(case))
        with open(os.path.join(HERE, case + ".l3ic"), "wb") as f:
            f.write(data)
        decoded = codec.decode(data)
        Image.fromarray(decoded).save(os.path.join(HERE, case + ".decoded.png"))
        golden["cases"][case] = {
            "model": model_of(case), "width": source.width, "height": source.height, "mode": source.mode,
            "l3ic_sha256": sha256(data), "l3ic_bytes": len(data),
            "symbols_sha256": symbols_sha256(data), "entropy_sha256": entropy_sha256(data),
            "decoded_sha256": sha256(np.ascontiguousarray(decoded).tobytes()),
            "psnr": round(psnr(np.asarray(source), decoded), 4),
        }
        print("%s: %s, %dx%d %s, %d bytes, PSNR %.2f dB" % (case, model_of(case), source.width, source.height,
                                                           source.mode, len(data), golden["cases"][case]["psnr"]))
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")


def model_hashes(manifest):
    """The SHA-256 of the files of a model that decide its files' bytes and pixels."""
    return {key + "_sha256": manifest["files"][name]["sha256"] for key, name in (
        ("encoder", "encoder.onnx"), ("decoder", "decoder.onnx"), ("entropy_model", "entropy_model.npz"))}


if __name__ == "__main__":
    main()
