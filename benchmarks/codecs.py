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
    """HEVC intra, 4:4:4, preset veryslow, tuned for PSNR: our stand-in for BPG 4:4:4 (bytes = the raw HEVC stream)."""
    name, tools, suffix = "x265", ("ffmpeg",), ".hevc"
    qualities = (51, 48, 45, 42, 39, 36, 33, 30, 27, 24)  # QP
    speed_quality = 30

    def encode(self, src, qp, folder):
        out = self.out_path(src, qp, folder)
        _run(["ffmpeg", "-y", "-loglevel", "error", "-i", src, "-c:v", "libx265", "-preset", "veryslow",
              "-tune", "psnr", "-pix_fmt", "yuv444p", "-x265-params", "qp=%d:keyint=1:log-level=error" % qp, "-frames:v", "1", "-f", "hevc", out])
        return out

    def decode(self, path, folder):
        png = self.decoded_path(path)
        _run(["ffmpeg", "-y", "-loglevel", "error", "-i", path, "-pix_fmt", "rgb24", "-frames:v", "1", png])
        return png


STANDARD = [JPEG(), WebP(), JPEG2000(), AVIF(), JPEGXL(), X265()]
BY_NAME = {c.name: c for c in STANDARD}


def available(codec):
    return all(shutil.which(t) for t in codec.tools)
