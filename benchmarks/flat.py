"""Where the error of flat regions comes from: ``python -m benchmarks.flat --images DIR --holdout-smooth 8``.

Smooth photos (defocused backgrounds, sky, gradients) decode with about 2
grey levels of error in their flat areas, and their PSNR saturates.  For each
photo this codes the image at ``-q`` with a model and measures, over its flat
8x8 blocks (luma std below ``l3ic.image.SMOOTH_BLOCK_STD``; one latent cell
each):

* the share of gained latents g * y that round to 0 (|g * y| < 0.5);
* the RMS error there of the decode of the rounded latents (what a file
  holds: since l3ic 0.9 rounded about the hyperprior's mean) and of the
  unrounded ones (the transforms alone);
* the PSNR of the whole photo decoded from latents rounded with every gain
  exponent raised by k (``--raise``, steps r^k finer), without the codebook's
  clipping, and the largest |symbol| (ŷ minus its origin) that needs: what finer steps would buy
  if the codebook held them (distortion only; the rate is not measured);
* where a file's bytes go (``rate_parts``): the header and chunk index, the
  side information ẑ, and the latents, with the share of the three costliest
  latent channels.  On smooth photos at the bottom of the range the latents
  are still most of the file, and a few channels most of those.

Photos are the smooth ones held out of a training folder (``--holdout-smooth
N``, after ``--holdout H``, as ``export.train`` splits them), scaled to at most
``--max-side`` pixels.
"""
import argparse

import numpy as np

from benchmarks.photos import held_out
from l3ic import analysis, container
from l3ic.codec import Codec
from l3ic.image import SMOOTH_BLOCK_STD, flat_blocks, from_array, psnr, to_uint8
from l3ic.quality import model_for, quality_units


def measure(codec, rgb, q, raises):
    """The row of one photo: flat share, share of zeros, flat RMS rounded / unrounded, PSNR rounded / unrounded,
    then (PSNR, largest |symbol|) for each raise of the gain exponents."""
    height, width = rgb.shape[:2]
    header = codec.header_for(from_array(rgb), q)
    analysed = codec.analyse(rgb, header)
    latents = analysed.latents
    em = codec.model.entropy_model
    exponents, corrections = em.gains.interpolated(header.quality)
    top = (latents.shape[1] - -(-height // 8)) // 2, (latents.shape[2] - -(-width // 8)) // 2

    def decoded(gain, values):  # the photo's pixels of a decode of coded values
        pixels = to_uint8(codec.model.run_decoder(gain.invert(values.astype(np.float32))))
        pixels = pixels.reshape((-1,) + pixels.shape[-3:])[0]
        return pixels[top[0] * 8:top[0] * 8 + height, top[1] * 8:top[1] * 8 + width].astype(np.float64)

    gain = em.gains.gain_with(exponents, corrections, header.quality)
    gained = gain.apply(latents)
    rounded = decoded(gain, codec.quantise(analysed, header).values)
    unrounded = decoded(gain, gained)
    h8, w8 = height // 8, width // 8
    flat_cells = flat_blocks(rgb)
    flat = np.kron(flat_cells, np.ones((8, 8), bool))
    cells = gained[:, top[0]:top[0] + h8, top[1]:top[1] + w8][:, flat_cells]
    source = rgb[:h8 * 8, :w8 * 8].astype(np.float64)
    rms = lambda pixels: float(np.sqrt(np.mean((pixels[:h8 * 8, :w8 * 8] - source)[flat] ** 2))) if flat.any() else np.nan
    row = [flat.mean(), np.mean(np.abs(cells) < 0.5) if cells.size else np.nan, rms(rounded), rms(unrounded),
           psnr(rgb, rounded), psnr(rgb, unrounded)]
    for k in raises:
        finer = em.gains.gain_with(exponents + k, corrections, header.quality)
        origin, _ = em.tile_origins(analysed.z, (0, 0) + latents.shape[1:], finer, header.mean_shifted)
        symbols = np.rint(finer.apply(latents) - origin)  # rounded as the file's latents are, unclipped
        row += [psnr(rgb, decoded(finer, origin + symbols)), int(np.abs(symbols).max())]
    return row


def rate_parts(data):
    """(header and chunk index, ẑ, latents, the three costliest latent channels) in bytes of a format-3 file."""
    parsed = container.L3icFile.parse(data)
    z = int(parsed.z_chunks().sizes.sum())
    channels = sum(parsed.tile_chunks(t).sizes.astype(np.int64) for t in range(parsed.header.n_tiles))
    latents = int(channels.sum())
    return len(data) - z - latents, z, latents, int(np.sort(channels)[-3:].sum())


def print_rates(codec, photos, q):
    print("\nWhere the bytes go at q %g (%s):\n" % (q, codec.model.name))
    print("| photo | bpp | PSNR | header + index | ẑ | latents | of which the 3 costliest channels |")
    print("|---|---|---|---|---|---|---|")
    for name, rgb in photos:
        data = codec.encode(rgb, quality=q)
        header, z, latents, top = rate_parts(data)
        share = lambda n: "%d B (%.0f %%)" % (n, 100.0 * n / len(data))
        print("| %s | %.4f | %.2f dB | %s | %s | %s | %.0f %% |" % (
            name, 8.0 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, codec.decode(data)), share(header),
            share(z), share(latents), 100.0 * top / max(latents, 1)), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.flat", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="the training folder (its held-out smooth photos are measured)")
    p.add_argument("--holdout", type=int, default=8, help="as export.train --holdout (default 8)")
    p.add_argument("--holdout-smooth", type=int, default=8, help="as export.train --holdout-smooth (default 8)")
    p.add_argument("-m", "--model", default="high", help="the model (default high)")
    p.add_argument("-q", "--quality", type=float, default=100, help="q of the -q scale (default 100)")
    p.add_argument("--raise", dest="raises", default="8,16", help="gain exponent raises to try (default 8,16)")
    p.add_argument("--rate-quality", type=float, action="append", default=[],
                   help="also show where the bytes go at this q (repeatable), with the model that serves it")
    p.add_argument("--max-side", type=int, default=1024, help="scale photos down to this longer side (default 1024)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    args = p.parse_args(argv)
    raises = [int(k) for k in args.raises.split(",") if k.strip()]
    codec = Codec(args.model, "cpu", threads=args.threads)
    print("%s at q %g; flat: 8x8 blocks of luma std < %g; finer: every gain exponent + k, unclipped\n"
          % (codec.model.name, args.quality, SMOOTH_BLOCK_STD))
    print("| photo | flat | g*y rounding to 0 | flat RMS rounded | unrounded | PSNR rounded | unrounded | %s |"
          % " | ".join("+%d: PSNR, max symbol" % k for k in raises))
    print("|---|---|---|---|---|---|---|%s" % ("---|" * len(raises)))
    photos = held_out(args.images, args.holdout, args.holdout_smooth, args.max_side, detailed=False)
    for name, rgb in photos:
        row = measure(codec, rgb, args.quality, raises)
        finer = " | ".join("%.2f dB, %d" % (row[6 + 2 * i], row[7 + 2 * i]) for i in range(len(raises)))
        print("| %s | %.0f %% | %.0f %% | %.2f | %.2f | %.2f dB | %.2f dB | %s |"
              % ((name, 100 * row[0], 100 * row[1]) + tuple(row[2:6]) + (finer,)), flush=True)
    for q in args.rate_quality:
        print_rates(Codec(model_for(quality_units(q)), "cpu", threads=args.threads), photos, q)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
