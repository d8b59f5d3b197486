"""``python -m runtime.decode INPUT.l3ic... [-o OUTPUT]``: decompress l3ic files.

The model named in each file is used unless ``-m`` says otherwise; a file made
by another model is refused (the file carries a hash of its decoder).  Several
inputs, a folder or a glob make a batch, as for ``runtime.encode``.

The default output of ``photo.l3ic`` is ``photo.decoded.png``, never
``photo.png``: that name is usually the lossless original the file was made
from, and a decode (even with ``-f``) must not invite replacing it.
"""
import argparse
import os
import sys
import time

from l3ic import batch, cli, container
from l3ic import image as images
from l3ic.files import STDIO, check_output_path, display_name, read_input
from l3ic.errors import L3icError
from l3ic.options import CodecOptions


def parse_args(argv, prog="l3ic decode"):
    p = cli.tool_parser(prog, "Decompress l3ic files to images.", ".l3ic files, folders or globs",
                        "output image (one input; its extension picks the format) or folder (ending in /, an "
                        "existing folder, or any -o with several inputs; created when missing); default: "
                        "INPUT.decoded.png next to each input (photo.l3ic -> photo.decoded.png)")
    p.add_argument("--channels", help="decode only these latent channels, e.g. 0,1,2 or 0-7 (the others: the hyperprior's guess, or zero in format 2)")
    p.add_argument("--crop", help="decode only this region, x,y,width,height in pixels (only the tiles it needs)")
    p.add_argument("--format", default="png", help="format of the default output names and of -o - (standard "
                                                   "output), as a file extension (default png)")
    p.add_argument("--png-level", type=png_level, default=images.PNG_LEVEL, metavar="N",
                   help="zlib level of PNG outputs, 0-9: 9 for the smallest files (slow), default %(default)d (fast)")
    batch.add_jobs_option(p)
    return p.parse_args(argv)


def png_level(text):
    if text not in [str(n) for n in range(10)]:
        raise argparse.ArgumentTypeError("must be 0 to 9, got %r" % text)
    return int(text)


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
    model, channels, region, force, png_level, fmt = options
    check_output_path(dst, inputs=[src], overwrite=force)
    data = read_input(src)
    if bytes(data[:len(container.MAGIC)]) != container.MAGIC:
        raise L3icError(not_l3ic(display_name(src, "standard input"), data))
    # parsing the header already applies --max-pixels (the codec's limit) and names the model
    parsed = container.L3icFile.parse(data, max_pixels=codecs.max_pixels)
    # before decoding: an unknown extension, and alpha that the output format would lose (the alpha record is
    # read only for such a format: decoding reads it again); an opaque alpha plane loses nothing
    no_alpha = images.writable_format(dst, fmt) in images.NO_ALPHA
    note = images.alpha_note(dst, no_alpha and images.has_transparency(parsed.side_record(images.ALPHA)), force, fmt)
    codec = codecs(model) if model else codecs.for_file(parsed.header.model_name)
    start = time.perf_counter()
    picture = codec.decode_to_pil(data, channels, region)
    seconds = time.perf_counter() - start
    images.save(picture, dst, overwrite=force, drop_alpha=force, png_level=png_level, stream_format=fmt)
    mode = picture.mode[:-1] if no_alpha and picture.mode in ("RGBA", "LA") else picture.mode  # what was written
    line = "%s -> %s: %dx%d %s, model %s, %.2f s in all" % (
        display_name(src, "standard input"), display_name(dst, "standard output"), picture.width, picture.height,
        mode, codec.model.name, cli.elapsed())
    if note:
        line += "; note: " + note
    return {"line": line, "pixels": picture.width * picture.height, "bytes_in": len(data),
            "bytes_out": None if dst == STDIO else os.path.getsize(dst), "l3ic_bytes": len(data), "seconds": seconds}


def not_l3ic(name, data):
    """The error for a file without l3ic's signature: what it is instead, when Pillow recognises it."""
    kind = images.sniff_format(data)
    if kind is None:
        return "%s is not an l3ic file" % name
    return "%s is not an l3ic file (it is an image in %s format): to compress it, run l3ic encode %s" % (name, kind, name)


def main(argv=None, prog="l3ic decode"):
    args = parse_args(argv, prog)
    CodecOptions.validated(args.provider, args.max_pixels, flags=True)  # before any work, as encode does
    channels = parse_channels(args.channels)
    files, is_batch = batch.expand(args.input, (".l3ic",))
    batch.make_output_folder(args.output, is_batch)
    fmt = args.format.lstrip(".")
    images.writable_format(STDIO, fmt)  # a bad --format is refused before any work
    options = (args.model, channels, parse_crop(args.crop), args.force, args.png_level, fmt)
    suffix = batch.DECODED + "." + fmt
    jobs = [(f, batch.output_for(f, args.output, is_batch, suffix), options) for f in files]
    return batch.run_tool(decode_one, jobs, args, is_batch, "files")


if __name__ == "__main__":
    sys.exit(cli.run(main))
