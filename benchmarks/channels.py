"""Rate-distortion of keeping only the K most important latent channels.

``python -m benchmarks.channels --images DIR [--model medium] [--keep 8,16,24,32]``

Exported models store their channels in importance order, so a file whose last
channels are replaced by the neutral latent (one CONSTANT byte each) is still a
valid file of the same model, at a lower rate.  That would give operating
points between the quality models without training more models; this measures
what it costs.  Every truncated file is written for real with the container
writer and decoded by the runtime, so bpp counts every byte.
"""
import argparse

import numpy as np

from benchmarks.metrics import ms_ssim, psnr
from l3ic import container, fse
from l3ic import image as images
from l3ic.codec import Codec
from l3ic.errors import ImageError


def keep_channels(data, keep):
    """The l3ic file ``data`` with every channel from ``keep`` on stored as the neutral value.

    The neutral symbol is the codebook's 0: in formats 1 and 2 the latent 0,
    in format 3 the hyperprior's guess, the base floor(mean).
    """
    parsed = container.L3icFile.parse(data)
    h = parsed.header
    neutral = bytes([-h.codebook_min])
    tiles = []
    for t in range(h.n_tiles):
        chunks = parsed.tile_chunks(t)
        kept = int(chunks.sizes[:keep].sum())
        dropped = h.channels - keep
        modes = np.concatenate([chunks.modes[:keep], np.full(dropped, fse.CONSTANT, np.uint8)])
        sizes = np.concatenate([chunks.sizes[:keep], np.ones(dropped, np.uint32)])
        tiles.append(container.TileChunks(modes, sizes, chunks.payload[:kept] + neutral * dropped))
    return container.write(h, tiles, parsed.side_data, parsed.z_chunks() if h.z_channels else None)


def measure(model, paths, keeps):
    """Mean bpp / PSNR / MS-SSIM over ``paths`` for each number of kept channels."""
    codec = Codec(model, "cpu")
    rows = {k: [] for k in keeps}
    for path in paths:
        picture = images.load(path, strip=True)
        full = codec.encode(picture)
        for k in keeps:
            data = keep_channels(full, k)
            decoded = np.asarray(codec.decode_to_pil(data).convert(picture.mode))
            rows[k].append((8.0 * len(data) / (picture.width * picture.height),
                            psnr(picture.pixels, decoded), ms_ssim(picture.pixels, decoded)))
    return {k: tuple(float(v) for v in np.mean(r, axis=0)) for k, r in rows.items()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.channels", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--model", default="medium")
    p.add_argument("--keep", help="comma list of channel counts (default: quarters of the model's channels)")
    p.add_argument("--limit", type=int, help="use only the first N images")
    args = p.parse_args(argv)
    channels = Codec(args.model, "cpu").model.channels
    keeps = [int(k) for k in args.keep.split(",")] if args.keep else [channels * q // 4 for q in (1, 2, 3, 4)]
    if not all(1 <= k <= channels for k in keeps):
        p.error("--keep values must be in 1..%d" % channels)
    try:
        paths = images.list_images(args.images, required=True)[:args.limit]
    except ImageError as e:
        raise SystemExit("error: %s" % e)
    print("model %s, %d images: mean over images" % (args.model, len(paths)))
    print("%-14s %8s %8s %9s" % ("kept channels", "bpp", "PSNR", "MS-SSIM"))
    for k, (bpp, p_db, ms) in measure(args.model, paths, keeps).items():
        print("%-14s %8.3f %8.2f %9.4f" % ("%d / %d" % (k, channels), bpp, p_db, ms))


if __name__ == "__main__":
    main()
