"""The standard codecs, driven through their Debian command-line tools.

Install them with ``apt-get install libjpeg-turbo-progs webp libopenjp2-tools
libavif-bin libjxl-tools ffmpeg``.  Each codec has a quality sweep chosen to
span about 0.1-2 bpp on photos, an encode and a decode command, and the number
of bytes that counts as its stream (for x265 the raw HEVC bitstream, as a
stand-in for BPG 4:4:4).  A codec whose tool is missing is skipped.
"""
import os
import shutil
import subprocess

from PIL import Image


def _run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ppm(src, folder):
    """Some tools read only PPM: convert the source once per folder."""
    ppm = os.path.join(folder, os.path.splitext(os.path.basename(src))[0] + ".ppm")
    if not os.path.exists(ppm):
        Image.open(src).convert("RGB").save(ppm)
    return ppm


class StandardCodec:
    name = ""
    tools = ()
    qualities = ()
    speed_quality = None
    suffix = ""

    def out_path(self, src, quality, folder):
        return os.path.join(folder, "%s.%s.%s%s" % (os.path.splitext(os.path.basename(src))[0], self.name, quality, self.suffix))

    def stream_bytes(self, path):
        return os.path.getsize(path)

    def decoded_path(self, path):
        return path + ".png"


class JPEG(StandardCodec):
    name, tools, suffix = "jpeg", ("cjpeg", "djpeg"), ".jpg"
    qualities = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
    speed_quality = 75

    def encode(self, src, q, folder):
        out = self.out_path(src, q, folder)
        _run(["cjpeg", "-quality", str(q), "-optimize", "-outfile", out, _ppm(src, folder)])
        return out

    def decode(self, path, folder):
        ppm = path + ".ppm"
        _run(["djpeg", "-outfile", ppm, path])
        return ppm


class WebP(StandardCodec):
    name, tools, suffix = "webp", ("cwebp", "dwebp"), ".webp"
    qualities = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
    speed_quality = 75

    def encode(self, src, q, folder):
        out = self.out_path(src, q, folder)
        _run(["cwebp", "-quiet", "-m", "6", "-q", str(q), src, "-o", out])
        return out

    def decode(self, path, folder):
        png = self.decoded_path(path)
        _run(["dwebp", "-quiet", path, "-o", png])
        return png


class JPEG2000(StandardCodec):
    name, tools, suffix = "jpeg2000", ("opj_compress", "opj_decompress"), ".j2k"
    qualities = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)  # target bpp (rate = 24 / bpp)
    speed_quality = 0.75

    def encode(self, src, bpp, folder):
        out = self.out_path(src, bpp, folder)
        # -I: the irreversible 9/7 wavelet, OpenJPEG's better choice for lossy coding (the default 5/3 is for lossless)
        _run(["opj_compress", "-i", _ppm(src, folder), "-o", out, "-r", "%.4f" % (24.0 / bpp), "-I"])
        return out

    def decode(self, path, folder):
        ppm = path + ".ppm"
        _run(["opj_decompress", "-i", path, "-o", ppm])
        return ppm


class AVIF(StandardCodec):
    name, tools, suffix = "avif", ("avifenc", "avifdec"), ".avif"
    qualities = (63, 60, 56, 52, 46, 40, 35, 30, 25, 20)  # AV1 quantizer, 4:4:4
    speed_quality = 30

    def encode(self, src, q, folder):
        out = self.out_path(src, q, folder)
        _run(["avifenc", "-y", "444", "-s", "4", "-j", "1", "--min", str(q), "--max", str(q), src, out])
        return out

    def decode(self, path, folder):
        png = self.decoded_path(path)
        _run(["avifdec", path, png])
        return png


class JPEGXL(StandardCodec):
    name, tools, suffix = "jxl", ("cjxl", "djxl"), ".jxl"
    qualities = (25.0, 18.0, 12.0, 8.0, 6.0, 4.5, 3.5, 2.5, 1.8, 1.2, 0.8)  # butteraugli distance
    speed_quality = 1.0

    def encode(self, src, d, folder):
        out = self.out_path(src, d, folder)
        _run(["cjxl", src, out, "-d", str(d), "--quiet"])
        return out

    def decode(self, path, folder):
        png = self.decoded_path(path)
        _run(["djxl", path, png, "--quiet"])
        return png


class X265(StandardCodec):
    """HEVC intra, 4:4:4, preset veryslow, tuned for PSNR: our stand-in for BPG 4:4:4 (bytes = the raw HEVC stream).

    Set up as BPG sets up x265 (libbpg's x265_glue.c): RGB goes to YCbCr with the BT.601 matrix at full range (every
    plane 0-255; bpgenc's default ``-c ycbcr`` is JPEG's full-range YCbCr), the stream says so in its VUI
    (``range=full``) and the decode converts back at full range; and x265 writes no "info" SEI (its version and
    options as text, about 2.2 kB per image, which BPG leaves out).  Up to l3ic 0.5 this baseline converted at limited
    range (16-235, ffmpeg's default) and kept the SEI: ``x265-0.5`` is that run, ``x265-limited`` this one at limited
    range, so that ``python -m benchmarks.codecs`` measures what each change is worth."""
    name, tools, suffix = "x265", ("ffmpeg",), ".hevc"
    qualities = (51, 48, 45, 42, 39, 36, 33, 30, 27, 24)  # QP
    speed_quality = 30
    yuv_range = "full"
    info_sei = False

    def encode(self, src, qp, folder):
        out = self.out_path(src, qp, folder)
        _run(["ffmpeg", "-y", "-loglevel", "error", "-i", src,
              "-vf", "scale=out_range=%s:out_color_matrix=bt601,format=yuv444p" % self.yuv_range,
              "-c:v", "libx265", "-preset", "veryslow", "-tune", "psnr",
              "-x265-params", "qp=%d:keyint=1:range=%s:info=%d:log-level=error" % (qp, self.yuv_range, self.info_sei),
              "-frames:v", "1", "-f", "hevc", out])
        return out

    def decode(self, path, folder):
        png = self.decoded_path(path)
        _run(["ffmpeg", "-y", "-loglevel", "error", "-i", path,
              "-vf", "scale=in_range=%s:in_color_matrix=bt601,format=rgb24" % self.yuv_range, "-frames:v", "1", png])
        return png


class X265Limited(X265):
    """The same run with RGB converted to limited-range YCbCr (16-235)."""
    name = "x265-limited"
    yuv_range = "limited"


class X265Old(X265Limited):
    """The x265 baseline of l3ic 0.5 and earlier: limited range, and x265's info SEI counted in the bytes."""
    name = "x265-0.5"
    info_sei = True


STANDARD = [JPEG(), WebP(), JPEG2000(), AVIF(), JPEGXL(), X265()]
BY_NAME = {c.name: c for c in STANDARD + [X265Limited(), X265Old()]}  # the last two: on request only


def available(codec):
    return all(shutil.which(t) for t in codec.tools)


def main(argv=None):
    """``python -m benchmarks.codecs --images DIR --codecs x265-0.5,x265``: the mean curve of each standard codec on
    a folder, and each codec against the first: BD-rate (PSNR, MS-SSIM) and mean PSNR gain at equal bpp.  No l3ic:
    that is ``benchmarks.rd``, whose cache ``--cache`` shares."""
    import argparse
    import json
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from benchmarks.bdrate import bd_rate, metric_at_rate
    from benchmarks.rd import _curve, _task, aggregate, bd_over_overlap, load_published, measure, plan
    from l3ic.image import list_images

    p = argparse.ArgumentParser(prog="python -m benchmarks.codecs", description=main.__doc__.split(":")[0] + ".")
    p.add_argument("--images", required=True, help="folder of test images (e.g. the Kodak set)")
    p.add_argument("--codecs", default="x265-0.5,x265-limited,x265", help="comma-separated, of: %s" % ", ".join(BY_NAME))
    p.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    p.add_argument("--qualities", help="comma-separated settings instead of each codec's sweep (e.g. QPs)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--cache", help="a results/NAME/cache folder of benchmarks.rd to take measurements from and add "
                                   "them to (keyed by codec and setting: delete it after changing a codec's command)")
    p.add_argument("--json", help="also write the curves and every measurement to this file")
    p.add_argument("--published", help="JSON of published mean curves (benchmarks/reference/compressai-kodak.json, "
                                       "valid with the Kodak images): each codec's BD-rate against --against")
    p.add_argument("--against", default="bpg444", help="comma-separated curves of --published (default bpg444)")
    args = p.parse_args(argv)
    names = args.codecs.split(",")
    for name in names:
        if name not in BY_NAME:
            raise SystemExit("error: unknown codec %s (known: %s)" % (name, ", ".join(BY_NAME)))
        if not available(BY_NAME[name]):
            raise SystemExit("error: %s needs %s (apt-get install libjpeg-turbo-progs webp libopenjp2-tools "
                             "libavif-bin libjxl-tools ffmpeg)" % (name, "/".join(BY_NAME[name].tools)))
    images = list_images(args.images, required=True)[:args.limit]
    if args.cache:  # benchmarks.rd's cache: what it measured is not measured again, and what is measured here joins it
        if args.qualities:
            raise SystemExit("error: --cache measures each codec's own sweep: leave out --qualities")
        rows, todo = plan(names, images, args.cache)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows += list(pool.map(_task, todo))
    else:
        tasks = []
        for name in names:
            qualities = [type(BY_NAME[name].qualities[0])(q) for q in args.qualities.split(",")] if args.qualities \
                else BY_NAME[name].qualities
            tasks += [(name, q, path) for q in qualities for path in images]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(measure, *zip(*tasks)))
    curves = aggregate(rows)
    print("%d images of %s\n" % (len(images), args.images))
    print("| codec | setting | bytes | bpp | PSNR | MS-SSIM |\n|---|---|---|---|---|---|")
    for name in names:
        for point in sorted(curves[name], key=lambda c: c["bpp"]):
            size = np.mean([r["bytes"] for r in rows if r["codec"] == name and r["quality"] == point["quality"]])
            print("| %s | %s | %.1f | %.4f | %.3f | %.4f |" % (name, point["quality"], size, point["bpp"], point["psnr"],
                                                            point["ms_ssim"]))
    anchor = names[0]
    if len(names) > 1 and all(len(c) > 1 for c in curves.values()):
        print("\n| codec | BD-rate vs %s (PSNR) | (MS-SSIM) | PSNR gain at equal bpp (dB) |\n|---|---|---|---|" % anchor)
    for name in names[1:] if all(len(c) > 1 for c in curves.values()) else []:
        bd = [bd_rate(*_curve(curves[anchor], m), *_curve(curves[name], m)) for m in ("psnr", "ms_ssim_db")]
        (ra, _), (rt, _) = _curve(curves[anchor], "psnr"), _curve(curves[name], "psnr")
        rates = np.geomspace(max(min(ra), min(rt)), min(max(ra), max(rt)), 64)
        gain = np.nanmean([metric_at_rate(*_curve(curves[name], "psnr"), r) - metric_at_rate(*_curve(curves[anchor], "psnr"), r)
                        for r in rates])
        print("| %s | %+.1f%% | %+.1f%% | %+.3f |" % (name, bd[0], bd[1], gain))
    if args.published:
        _, published = load_published(args.published)
        against = args.against.split(",")
        unknown = [n for n in against if n not in published]
        if unknown:
            raise SystemExit("error: %s not in %s (it has %s)" % (", ".join(unknown), args.published, ", ".join(published)))
        print("\n| codec | %s |\n|---|%s" % (" | ".join("BD-rate vs %s (PSNR) | (MS-SSIM)" % n for n in against),
                                             "---|---|" * len(against)))
        for name in names:
            cells = []
            for n in against:
                for metric in ("psnr", "ms_ssim_db"):
                    bd, _, cover = bd_over_overlap(published[n], curves[name], metric)
                    cells.append("%+.1f%%" % bd + (" (over %.0f%% of its range)" % (100 * cover) if cover < 0.995 else "")
                                 if bd is not None else "-")
            print("| %s | %s |" % (name, " | ".join(cells)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"images": [os.path.basename(p) for p in images], "curves": curves, "per_image": rows}, f, indent=1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
