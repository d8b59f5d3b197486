"""``python -m runtime.decode INPUT.l3ic... [-o OUTPUT]``: decompress l3ic files.

The model named in each file is used unless ``-m`` says otherwise; a file made
by another model is refused (the file carries a hash of its decoder).  Several
inputs, a folder or a glob make a batch, as for ``runtime.encode``.
"""
import os
import sys
import time

from l3ic import batch, cli, container
from l3ic import image as images
from l3ic.atomic import check_output_path
from l3ic.errors import L3icError


def parse_args(argv, prog="l3ic decode"):
    p = cli.tool_parser(prog, "Decompress l3ic files to images.", ".l3ic files, folders or globs",
                        "output image (one input; its extension picks the format, default INPUT with .png) "
                        "or folder (several inputs)")
    p.add_argument("--channels", help="decode only these latent channels, e.g. 0,1,2 or 0-7 (others are zero)")
    p.add_argument("--crop", help="decode only this region, x,y,width,height in pixels (only the tiles it needs)")
    p.add_argument("--format", default="png", help="output format of a batch, as a file extension (default png)")
    batch.add_jobs_option(p)
    return p.parse_args(argv)


def parse_channels(text):
    """'0,1,5-7' -> [0, 1, 5, 6, 7]."""
    if text is None:
        return None
    channels = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            channels += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise L3icError("--channels must look like 0,1,2 or 0-7, got %r" % text)
    return channels


def parse_crop(text):
    """'x,y,w,h' -> (x, y, w, h)."""
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise L3icError("--crop must be x,y,width,height in pixels, got %r" % text)
    return x, y, w, h


def decode_one(codecs, src, dst, options):
    """Decode one file; the unit of work of both the single-file and the batch mode."""
    model, channels, region, force = options
    check_output_path(dst, inputs=[src], overwrite=force)
    data = cli.read_input(src)
    # the model named in the header; parsing it already applies --max-pixels (the codec's limit)
    codec = codecs(model or container.L3icFile.parse(data, max_pixels=codecs.max_pixels).header.model_name)
    start = time.perf_counter()
    picture = codec.decode_to_pil(data, channels, region)
    elapsed = time.perf_counter() - start
    images.save(picture, dst, overwrite=force)
    line = "%s -> %s: %dx%d %s, model %s, %.2f s" % (src, dst, picture.width, picture.height, picture.mode, codec.model.name, elapsed)
    return {"line": line, "pixels": picture.width * picture.height, "bytes_in": len(data),
            "bytes_out": os.path.getsize(dst), "l3ic_bytes": len(data)}


def main(argv=None, prog="l3ic decode"):
    args = parse_args(argv, prog)
    channels = parse_channels(args.channels)
    files, is_batch = batch.expand(args.input, (".l3ic",))
    if is_batch and args.output and not os.path.isdir(args.output):
        raise L3icError("with several inputs, -o must be an existing folder: %s" % args.output)
    options = (args.model, channels, parse_crop(args.crop), args.force)
    suffix = "." + args.format.lstrip(".")
    jobs = [(f, batch.output_for(f, args.output, is_batch, suffix), options) for f in files]
    return batch.run_tool(decode_one, jobs, args, is_batch, "files")


if __name__ == "__main__":
    sys.exit(cli.run(main))
