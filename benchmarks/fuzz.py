"""Fuzz the l3ic decoders: ``python -m benchmarks.fuzz --seconds N [--target container|fse|decode|all]``.

Targets (each gets hostile bytes and may only fail with the runtime's own errors):

* ``container``: ``L3icFile.parse`` of every version (1, 2 and 3), every
  side-data record, and the full entropy decode of every tile
  (the model's ``l3ic.entropy`` coder; no network): for format 3 that is the ẑ
  chunk (with the model's z tables), the integer hyper-synthesis on the
  decoded ẑ (``EntropyModel.tile_parameters``) and every tile's chunks with
  the tables it picks, with the entropy model of the installed model the file names
  (checked against the header as ``Codec.decode`` does); formats 1 and 2 need
  no model.  A quarter of the inputs decode some channels of some tiles only
  (a preview, a region).  Pixel limit 16384 (bounds the (C, h, w) arrays).
  Allowed: ``L3icError``.
* ``fse``: the C glue, ``l3ic.fse.decode_channels``, called with arbitrary
  modes, sizes, symbol counts, alphabet sizes and payloads taken from the input
  (with flag 0x04, as rasters of a width taken from the input, so CONTEXT
  chunks are decoded too); inputs whose first byte has its high bit set are
  instead a round trip
  (symbols from the input -> ``encode_channels`` -> ``decode_channels``, which
  must give them back).  With flag 0x02, the same two paths go through
  ``fse.StaticTables`` (format 3's STATIC chunks) instead: one of a few table
  sets built at start-up (the format-3 medium model's latent and z tables when
  one is installed, and small random valid sets), picked by the second byte;
  modes, sizes, table indices and payload come from the input
  (``StaticTables.decode``), or symbols and table indices do
  (``encode`` -> ``decode`` must give them back).  Allowed: ``FSEError`` and
  ``ValueError`` (misuse).
* ``decode``: the whole ``Codec("medium").decode`` (container, FSE, hyperprior,
  decoder network; format-2 files through the legacy decoder), pixel limit
  65536.  Allowed: ``L3icError``.

Seeds: files of the installed medium model (format 3 with a hyperprior model:
RGB, gray, alpha + EXIF + ICC, a 1x1, one in 4 x 4-cell tiles with ragged edge
tiles, one at a quality between two gain grid points) and the frozen golden
files of earlier releases: format 1, 2, and format 3 without a quality field
(tests/golden).

Anything else that escapes (``IndexError``, ``MemoryError``, a wrong round
trip, ...) is a *finding*: its input is saved under ``--crashes`` with the
traceback, and fuzzing goes on.  The target runs in a child process, which
writes every input to a shared file before running it, so a hard crash
(segfault, abort, a sanitizer report) is caught too: the parent saves the
input that killed the child, counts a crash and starts a new child for the
rest of the time.

Engines: ``atheris`` (libFuzzer, coverage-guided on the Python code) when it
is installed (``pip install atheris``), else a built-in mutation fuzzer
(bit flips, interesting integers in header fields, splices, truncations),
which keeps an input whenever it produces an outcome (error message) not seen
before.  Both apply the same trick for l3ic inputs: about half the inputs have
their CRC32s recomputed (``fix_crcs``) so that mutations get past the
checksums into header validation, chunk decoding and the network (with
atheris, an input's last byte is a control byte: odd means "fix the CRCs").

Sanitizers (``--sanitize``): builds the FSE extension with AddressSanitizer
and UBSan into a cache folder (``$XDG_CACHE_HOME/l3ic/fuzz-asan-<hash>``;
``build_fse.py`` honours ``L3IC_FSE_CFLAGS``) and runs the children with it.
The recipe, by hand, from the repository root (gcc; with clang, preload
``clang -print-file-name=libclang_rt.asan-x86_64.so`` instead)::

    export L3IC_FSE_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    python -c "import build_fse; print(build_fse.make_ffibuilder(absolute_paths=True).compile(tmpdir='/tmp/fse-asan'))"
    # -> /tmp/fse-asan/l3ic/_fse.cpython-*.so; it must be imported instead of l3ic/_fse*.so:
    #    this script puts /tmp/fse-asan/l3ic first on l3ic.__path__ (L3IC_FUZZ_FSE_DIR=/tmp/fse-asan)
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \\
    ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1 \\
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 L3IC_FUZZ_FSE_DIR=/tmp/fse-asan \\
    python -m benchmarks.fuzz --seconds 60 --target fse --engine builtin

``LD_PRELOAD`` is needed because Python itself is not built with ASan and the
ASan runtime must be loaded first; ``PYTHONMALLOC=malloc`` makes Python's own
buffers (the payload ``bytes``) plain ``malloc`` blocks with ASan red zones, so
an overread of the payload is reported; leak detection is off because Python
never frees everything at exit.  With ``--sanitize``, ``--engine auto`` picks
the built-in engine: a preloaded gcc ``libasan`` provides the
sanitizer-coverage symbols that atheris registers its coverage with, so
libFuzzer gets no coverage feedback (atheris says so at start-up); atheris with
ASan needs Python linked against a clang-built libFuzzer + ASan runtime
(atheris' ``using_sanitizers.md``).  ``--sanitize`` also runs a self-test first: a
deliberate out-of-bounds read through the extension must be reported by ASan,
or the run stops (so a sanitizer that is silently not active is never
mistaken for a clean run).

    python -m benchmarks.fuzz --seconds 60 --target all --sanitize
"""
import argparse
import hashlib
import json
import mmap
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ("container", "fse", "decode")
MAX_LEN = 4096
SANITIZE_CFLAGS = "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
SANITIZE_ENV = {
    "PYTHONMALLOC": "malloc",
    "ASAN_OPTIONS": "detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1:symbolize=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}
_STATE = struct.Struct("<QQI")  # inputs run, inputs accepted, length of the current input (followed by its bytes)
_FIXED = struct.Struct("<4sBHIIBBHhHIIII16sBB")  # the container's fixed header (docs/FORMAT.md)
_HYPER = struct.Struct("<HB")  # format 3, after the fixed header: z channels, hyper stride
_QUALITY = struct.Struct("<H")  # format 3 with the QUALITY flag, after _HYPER: q in hundredths
FLAG_QUALITY, FLAG_LOSSLESS = 0x0002, 0x0004  # the flags that change the layout (docs/FORMAT.md)
_SIDE_ENTRY = 17


# ---- targets ---------------------------------------------------------------------------------
class Target:
    """A fuzz target: ``run(data)`` raises only ``allowed`` exceptions on bad input.

    ``paths`` counts which code paths inputs reached (the tests check that the interesting ones are hit)."""

    l3ic = True  # inputs are l3ic files (seeds, CRC fixing)

    def __init__(self):
        import collections
        from l3ic.errors import L3icError
        self.allowed = (L3icError,)
        self.paths = collections.Counter()

    def run(self, data):
        raise NotImplementedError

    def seeds(self):
        return l3ic_seeds()


class ContainerTarget(Target):
    MAX_PIXELS = 1 << 14  # bounds latent_values' (C, h, w) arrays: C < 700 chunks fit in MAX_LEN bytes

    def __init__(self):
        super().__init__()
        from l3ic import Codec, container, read_latents
        from l3ic.entropy import PerFileCoder
        self.parse, self.per_file = container.L3icFile.parse, PerFileCoder()
        self.lossless_flag = container.FLAG_LOSSLESS
        self.read_latents = read_latents
        # the model lookup of Codec.decode (the file's model identity, then its header against the model)
        self.codec = Codec("medium", "cpu", max_pixels=self.MAX_PIXELS, threads=1)
        if self.codec.model.has_hyperprior:
            self.codec.model.entropy_model  # loaded once, here

    def run(self, data):
        parsed = self.parse(data, max_pixels=self.MAX_PIXELS, max_side_data=1 << 20)
        parsed.side_data
        version = parsed.version
        self.paths["v%d-parsed" % version] += 1
        # formats 1 and 2 are decoded without a model (their coder does not look at it); 3 needs its entropy model
        h = parsed.header
        if h.flags & self.lossless_flag:  # a tiny image as pixels: no model, no latents
            self.codec.decode(data)
            self.paths["v3-lossless"] += 1
            return
        coder = self.codec.file_coder(h) if version >= 3 else self.per_file
        if version >= 3:
            coder.decode_z(parsed)
            self.paths["v3-z-decoded"] += 1  # the hyper-synthesis runs on this ẑ next
        channels = tiles = None
        pick = zlib.crc32(data)
        if pick % 4 == 0:  # a third of the time: some channels of some tiles (a preview, a region), in any order
            rng = random.Random(pick)
            channels = rng.sample(range(h.channels), rng.randint(1, min(h.channels, 8)))
            tiles = rng.sample(range(h.n_tiles), rng.randint(1, min(h.n_tiles, 4)))
        coder.decode(parsed, channels, tiles)
        self.paths["v%d-decoded%s" % (version, "" if channels is None else "-subset")] += 1
        if pick % 8 == 1:  # the API that finds the file's model by itself
            self.read_latents(data, channels, max_pixels=self.MAX_PIXELS)
            self.paths["v%d-read_latents" % version] += 1


def _random_tables(rng, n_tables, alphabet, table_log):
    """Valid normalized counts: every count >= 1, each row summing to 2^table_log, skewed like real tables."""
    import numpy as np
    counts = np.ones((n_tables, alphabet), np.int64)
    for row in counts:
        p = rng.dirichlet(np.full(alphabet, 0.3))
        row += rng.multinomial((1 << table_log) - alphabet, p)
    return counts


class FSETarget(Target):
    l3ic = False

    def __init__(self):
        super().__init__()
        import numpy as np
        from l3ic import fse
        from l3ic.errors import FSEError
        self.fse = fse
        self.allowed = (FSEError, ValueError)
        rng = np.random.default_rng(7)
        # small random valid sets, and the largest alphabet at the largest tableLog
        self.counts = [_random_tables(rng, k, a, log) for k, a, log in ((3, 5, 5), (1, 2, 5), (2, 256, 12), (17, 32, 9))]
        self.tables = [fse.StaticTables(c, int(c[0].sum()).bit_length() - 1) for c in self.counts]
        try:  # the real ones, when a format-3 model is installed
            from l3ic.model import Model
            model = Model("medium", "cpu")
            if model.has_hyperprior:
                em = model.entropy_model
                with np.load(os.path.join(model.folder, "entropy_model.npz")) as npz:
                    self.counts[:0] = [npz["latent_counts"], npz["z_counts"]]
                self.tables[:0] = [em.latent_tables, em.z_tables]
        except Exception as e:  # noqa: BLE001 - a missing model is not a reason not to fuzz the rest
            print("fse target: no format-3 medium model (%s); random static tables only" % e, file=sys.stderr)

    def run(self, data):
        import numpy as np
        if len(data) < 5:
            return
        flags, alphabet = data[0], 2 + data[1] % 255
        n_symbols = int.from_bytes(data[2:4], "little") * (16 if flags & 0x40 else 1)
        n_channels = data[4] % 8
        rest = data[5:]
        if flags & 0x02:
            return self._run_static(data, flags, n_symbols, n_channels, rest)
        width = 0
        if flags & 0x04:  # rasters: CONTEXT chunks are allowed
            width = 1 + (data[4] >> 3) % 32
            n_symbols -= n_symbols % width
        if flags & 0x80:  # round trip: symbols from the input must come back exactly
            n_symbols = min(n_symbols, 4096)
            raw = np.frombuffer(rest or b"\x00", np.uint8).astype(np.int64)
            symbols = np.resize(raw % alphabet if flags & 0x20 else raw & (1 << (data[1] % 8)) - 1, (n_channels, n_symbols))
            symbols = np.ascontiguousarray(np.minimum(symbols, alphabet - 1), np.uint8)
            coded = self.fse.encode_channels(symbols, alphabet, width)
            back = self.fse.decode_channels(coded.payload, coded.modes, coded.sizes, n_symbols, alphabet, width)
            if not np.array_equal(back, symbols):
                raise AssertionError("FSE round trip changed the symbols")
            return
        modes, rest = list(rest[:n_channels]), rest[n_channels:]
        size_bytes = 4 if flags & 0x20 else 2
        sizes = [int.from_bytes(rest[i * size_bytes:(i + 1) * size_bytes], "little") for i in range(n_channels)]
        payload = rest[n_channels * size_bytes:]
        if flags & 0x10:  # Python-level misuse: negative / huge values, wrong types
            sizes = [s - 3 if s % 2 else s << 20 for s in sizes]
            modes = [m - 128 for m in modes]
        if flags & 0x08:  # exact layouts: sizes that add up, so the C decoder runs on the chunks
            modes = [m % (5 if width else 4) for m in modes]
            sizes = _exact_sizes(modes, sizes, len(payload), n_symbols, alphabet, self.fse)
        self.fse.decode_channels(payload, modes, sizes, n_symbols, alphabet, width)

    def _run_static(self, data, flags, n_symbols, n_channels, rest):
        """Flag 0x02: STATIC chunks (format 3) through ``StaticTables``; data[1] picks the table set, data[4] >> 3
        the number of bytes of table indices (repeated over the (channels, symbols) array)."""
        import numpy as np
        tables = self.tables[data[1] % len(self.tables)]
        alphabet = tables.alphabet_size
        index_len = 1 + (data[4] >> 3)
        if flags & 0x80:  # round trip: symbols and table indices from the input
            self.paths["static-roundtrip"] += 1
            n_symbols = min(n_symbols, 4096)
            index_bytes, rest = rest[:index_len], rest[index_len:]
            index = np.resize(np.frombuffer(index_bytes or b"\x00", np.uint8).astype(np.int64) % tables.n_tables, (n_channels, n_symbols))
            raw = np.frombuffer(rest or b"\x00", np.uint8).astype(np.int64)
            bits = (data[1] >> 3) % 9
            symbols = np.resize(raw % alphabet if flags & 0x20 else raw & (1 << bits) - 1, (n_channels, n_symbols))
            symbols = np.ascontiguousarray(np.minimum(symbols, alphabet - 1), np.uint8)
            index = np.ascontiguousarray(index, np.uint8)
            coded = tables.encode(symbols, index)
            self.paths.update("static-encoded-" + self.fse.MODE_NAMES[m] for m in coded.modes.tolist())
            back = tables.decode(coded.payload, coded.modes, coded.sizes, index)
            if not np.array_equal(back, symbols):
                raise AssertionError("STATIC round trip changed the symbols")
            return
        self.paths["static-decode"] += 1
        modes, rest = list(rest[:n_channels]), rest[n_channels:]
        size_bytes = 4 if flags & 0x20 else 2
        sizes = [int.from_bytes(rest[i * size_bytes:(i + 1) * size_bytes], "little") for i in range(n_channels)]
        rest = rest[n_channels * size_bytes:]
        index_bytes, payload = rest[:index_len], rest[index_len:]
        index = np.frombuffer(index_bytes or b"\x00", np.uint8)
        rows = n_channels
        if flags & 0x10:  # Python-level misuse: negative / huge values, wrong shapes, out-of-range table indices
            sizes = [s - 3 if s % 2 else s << 20 for s in sizes]
            modes = [m - 128 for m in modes]
            rows += index_len % 3 - 1
        else:
            index = index.astype(np.int64) % tables.n_tables  # (256 tables: every byte)
        if flags & 0x08:  # exact layouts: the modes STATIC decoding knows, sizes that add up
            modes = [{1: self.fse.CONSTANT, 2: self.fse.RAW, 3: self.fse.EMPTY}.get(m % 6, self.fse.STATIC) for m in modes]
            sizes = _exact_sizes(modes, sizes, len(payload), n_symbols, alphabet, self.fse)
        index = np.ascontiguousarray(np.resize(index, (max(rows, 0), n_symbols)), np.uint8)
        tables.decode(payload, modes, sizes, index)
        self.paths["static-decoded"] += 1
        self.paths.update("static-decoded-" + self.fse.MODE_NAMES[m] for m in modes)

    def seeds(self):
        import numpy as np
        rng = np.random.default_rng(0)
        seeds = []
        for alphabet, n, channels in ((32, 64, 3), (2, 9, 2), (256, 300, 4), (32, 1, 1), (5, 1000, 5)):
            symbols = np.minimum(rng.geometric(0.3, (channels, n)) - 1, alphabet - 1).astype(np.uint8)
            symbols[0] = symbols[0, 0]  # a CONSTANT channel
            coded = self.fse.encode_channels(symbols, alphabet)
            for flags in (0x00, 0x08, 0x20):
                seeds.append(self._seed(flags, alphabet, n, channels, coded))
            seeds.append(bytes([0xA0, alphabet - 2]) + n.to_bytes(2, "little") + bytes([channels]) + symbols.tobytes())
        for width, rows in ((32, 32), (8, 60)):  # clustered rasters, coded with CONTEXT chunks
            channels = 2 | ((width - 1) << 3)  # data[4]: 2 channels, and the width for flag 0x04
            mask = rng.random((2, rows, width)) < 0.2
            symbols = np.where(mask, rng.integers(0, 32, mask.shape), 15).astype(np.uint8).reshape(2, rows * width)
            coded = self.fse.encode_channels(symbols, 32, width)
            for flags in (0x04, 0x0C, 0x24):
                seeds.append(self._seed(flags, 32, rows * width, channels, coded))
        # STATIC chunks, with every table set: a constant channel, one drawn from its symbols' tables (STATIC),
        # a skewed one and uniform noise (RAW)
        for which, (tables, counts) in enumerate(zip(self.tables, self.counts)):
            for n, index_bytes in ((64, bytes([which * 5 % 251, 1, 2, 3])), (400, bytes(range(0, 250, 9))), (1, b"\x07")):
                channels = 4
                index = np.ascontiguousarray(np.resize(np.frombuffer(index_bytes, np.uint8).astype(np.int64) % tables.n_tables, (channels, n)), np.uint8)
                a = tables.alphabet_size
                cdf = np.cumsum(counts[index[1]], axis=1)
                fitting = (cdf < rng.integers(0, cdf[:, -1:], (n, 1)) + 1).sum(axis=1)
                symbols = np.stack([np.full(n, a // 2), fitting, np.minimum(rng.geometric(0.4, n) - 1, a - 1),
                                    rng.integers(0, a, n)]).astype(np.uint8)
                coded = tables.encode(symbols, index)
                head = bytes([which]) + n.to_bytes(2, "little") + bytes([channels | (len(index_bytes) - 1) << 3])
                for flags in (0x02, 0x0A, 0x22):
                    size_bytes = 4 if flags & 0x20 else 2
                    seeds.append(bytes([flags]) + head + coded.modes.tobytes()
                                 + b"".join(int(s).to_bytes(size_bytes, "little") for s in coded.sizes)
                                 + index_bytes + coded.payload)
                seeds.append(bytes([0xA2]) + head + index_bytes + symbols.tobytes())  # round trip
        return seeds

    @staticmethod
    def _seed(flags, alphabet, n, channels, coded):
        size_bytes = 4 if flags & 0x20 else 2
        return (bytes([flags, alphabet - 2]) + n.to_bytes(2, "little") + bytes([channels]) + coded.modes.tobytes()
                + b"".join(int(s).to_bytes(size_bytes, "little") for s in coded.sizes) + coded.payload)


def _exact_sizes(modes, sizes, total, n_symbols, alphabet, fse):
    """Chunk sizes that fit each mode and add up to the payload size (FSE, CONTEXT and STATIC chunks share what
    is left)."""
    fixed = {fse.CONSTANT: 1, fse.EMPTY: 0}
    out = [fixed.get(m, fse.raw_size(n_symbols, alphabet) if m == fse.RAW else 0) for m in modes]
    free = [i for i, m in enumerate(modes) if m in (fse.FSE, fse.CONTEXT, fse.STATIC)]
    left = total - sum(out)
    for k, i in enumerate(free):
        share = left if k == len(free) - 1 else min(left, sizes[i] % (left + 1)) if left > 0 else 0
        out[i] = max(share, 0)
        left -= out[i]
    return out


class DecodeTarget(Target):
    def __init__(self):
        super().__init__()
        from l3ic import Codec
        self.codec = Codec("medium", "cpu", max_pixels=1 << 16, threads=1)

    def run(self, data):
        self.codec.decode(data)


class AbortTarget(Target):
    """For testing the harness: dies hard on inputs starting with ``KILL``."""

    l3ic = False

    def run(self, data):
        if data[:4] == b"KILL":
            os.abort()

    def seeds(self):
        return [b"KILL me", b"spare me"]


class RaiseTarget(AbortTarget):
    """For testing the harness: raises an exception the runtime never may on inputs starting with ``RAISE``."""

    def run(self, data):
        if data[:5] == b"RAISE":
            raise IndexError("a planted bug")

    def seeds(self):
        return [b"RAISE me", b"spare me"]


def make_target(name):
    return {"container": ContainerTarget, "fse": FSETarget, "decode": DecodeTarget, "_abort": AbortTarget,
            "_raise": RaiseTarget}[name]()


_SEEDS = {}


def l3ic_seeds():
    """Small real files of the installed medium model (format 3 for a hyperprior model): RGB, gray, alpha + EXIF +
    ICC side data, a tiled one with ragged edge tiles, a 1x1; and the frozen format-2 and format-1 golden files."""
    key = os.environ.get("L3IC_MODELS")
    if key not in _SEEDS:
        _SEEDS[key] = _make_l3ic_seeds()
    return list(_SEEDS[key])


def _lossy(codec, image):
    """The network's file of a tiny image, which ``Codec.encode`` would store losslessly (the encode stages)."""
    from l3ic import image as images
    picture = images.from_array(image)
    header = codec.header_for(picture)
    return codec.write(picture, header, codec.quantise(codec.analyse(picture.rgb(), header), header))


def _make_l3ic_seeds():
    import numpy as np
    from l3ic import Codec
    from l3ic.tiling import Tiling
    rng = np.random.default_rng(1)
    codec = Codec("medium", "cpu", threads=1)
    smooth = np.clip(np.cumsum(rng.normal(0, 6, (48, 48, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    alpha = np.dstack([smooth[:16, :24], (np.arange(16 * 24) % 256).astype(np.uint8).reshape(16, 24)])
    seeds = [codec.encode(smooth[:24, :40]), _lossy(codec, smooth[:20, :17, 0]), _lossy(codec, alpha),
             _lossy(codec, smooth[:1, :1]), codec.encode(rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)),
             codec.encode(rng.integers(0, 256, (3, 6), dtype=np.uint8))]  # the last two: lossless (noise)
    from PIL import Image
    exif = Image.Exif()
    exif[0x010F] = "fuzz"
    image = Image.fromarray(smooth[:8, :8])
    image.info["icc_profile"] = b"icc profile bytes" * 3
    image.info["exif"] = exif.tobytes()
    seeds.append(codec.encode(image))
    # tiles of 4 x 4 latent cells (format 3 needs multiples of the hyper stride 4); a 6 x 5 latent gives
    # tiles of 4 and 2 rows by 4 and 1 columns: ragged edge tiles
    seeds.append(Codec("medium", "cpu", threads=1, tiling=Tiling(whole_image=4, tile=4)).encode(smooth[:48, :40]))
    if codec.quality_range:  # gains interpolated between two grid points
        lo, hi = codec.quality_range
        seeds.append(codec.encode(smooth[:16, :32], quality=round((lo + hi) / 2 + 0.07, 2)))
    # the frozen older formats (decoded by the legacy decoder): from the checkout, found next to this file or, for
    # an installed copy run from the checkout (as CI runs the tests), in the working directory
    for root in (REPO, os.getcwd()):
        folder = os.path.join(root, "tests", "golden")
        if os.path.isdir(folder):
            for name in ("format2/rgb.l3ic", "format2/rgb.v1.l3ic", "format2/gray.l3ic", "l3ic-0.3/rgb.l3ic",
                         "l3ic-0.3/small.l3ic"):
                with open(os.path.join(folder, name), "rb") as f:
                    seeds.append(f.read())
            break
    return seeds


# ---- mutation --------------------------------------------------------------------------------
def _layout(buf):
    """The l3ic layout of ``buf`` as far as it can be followed: (side table offset, side count, offset of the CRCs
    of the chunks, header end, number of ẑ chunks (1 for format 3, else 0), [(mode offset, start, length)] per
    chunk), or None."""
    if len(buf) < _FIXED.size:
        return None
    fields = _FIXED.unpack_from(buf)
    channels, latent_h, latent_w, tile_h, tile_w, side_count, name_len = fields[9:14] + fields[15:17]
    if 0 in (channels, latent_h, latent_w, tile_h, tile_w):
        return None
    name_start, z_chunks = _FIXED.size, 0
    if buf[4] == 3:  # format 3: z channels u16, hyper stride u8 before the name; the ẑ chunk comes first
        if len(buf) < _FIXED.size + _HYPER.size:
            return None
        z_chunks = 1 if _HYPER.unpack_from(buf, _FIXED.size)[0] else 0
        name_start += _HYPER.size + (_QUALITY.size if fields[2] & FLAG_QUALITY else 0)
    table = name_start + name_len
    index = table + _SIDE_ENTRY * side_count
    count = 0 if fields[2] & FLAG_LOSSLESS else -(-latent_h // tile_h) * -(-latent_w // tile_w) * channels + z_chunks
    if index + 6 * count + 4 > len(buf):
        return None
    pos, lengths = index + count, []
    for _ in range(count):
        value, shift = 0, 0
        while pos < len(buf) and shift < 35:
            value |= (buf[pos] & 0x7F) << shift
            shift += 7
            pos += 1
            if buf[pos - 1] < 0x80:
                break
        lengths.append(value)
    head_end = pos + 4 * count
    if head_end + 4 > len(buf):
        return None
    chunks, at = [], head_end + 4
    for i, length in enumerate(lengths):
        chunks.append((index + i, at, length))
        at += length
    return table, side_count, pos, head_end, z_chunks, chunks


def fix_crcs(data):
    """``data`` with every CRC32 of the l3ic layout (versions 1 to 3) recomputed (header, chunks, side data), so
    that a mutated file gets past the checksums; returned unchanged where its layout cannot be followed."""
    buf = bytearray(data)
    layout = _layout(buf)
    if layout is None:
        return bytes(data)
    table, side_count, crcs, head_end, _, chunks = layout
    at = head_end + 4
    for i, (_, start, length) in enumerate(chunks):
        struct.pack_into("<I", buf, crcs + 4 * i, zlib.crc32(buf[start:start + length]))
        at = start + length
    for j in range(side_count):
        entry = table + _SIDE_ENTRY * j
        stored = struct.unpack_from("<I", buf, entry + 5)[0]
        struct.pack_into("<I", buf, entry + 13, zlib.crc32(buf[at:at + stored]))
        at += stored
    struct.pack_into("<I", buf, head_end, zlib.crc32(buf[:head_end]))
    return bytes(buf)


def _mutate_chunk(rng, buf):
    """In place, inside one chunk (the ẑ chunk half the time, in format 3): flip bits, overwrite bytes, or
    give the chunk another mode of the same size class; the CRCs are then fixed, so the edit reaches the decoder
    (for ẑ: the hyper-synthesis on hostile side information)."""
    layout = _layout(buf)
    if layout is None or not layout[5]:
        return buf
    z_chunks, chunks = layout[4], layout[5]
    pool = chunks[:z_chunks] if z_chunks and rng.random() < 0.5 else chunks
    mode_at, start, length = rng.choice(pool)
    end = min(start + length, len(buf))
    op = rng.randrange(4)
    if op == 3 or end <= start:
        buf[mode_at] = rng.choice((0, 1, 2, 3, 4, 5, 5, rng.randrange(256)))
    elif op == 0:
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    elif op == 1:
        at = rng.randrange(start, end)
        for i in range(at, min(end, at + rng.randint(1, 8))):
            buf[i] = rng.randrange(256)
    else:
        buf[rng.randrange(start, end)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
    return bytearray(fix_crcs(bytes(buf)))


_INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 4096, 32767, 32768, 65535, 65536,
                1 << 24, (1 << 31) - 1, 1 << 31, (1 << 32) - 1)
_HEADER_FIELDS = ((5, 2), (7, 4), (11, 4), (15, 1), (16, 1), (17, 2), (19, 2), (21, 2), (23, 4), (27, 4), (31, 4),
                  (35, 4), (55, 1), (56, 1), (57, 2), (59, 1))  # (offset, size) of the header's fields after the
# magic (the last two: format 3's z channels and hyper stride)


class Mutator:
    """Random edits of byte strings; for l3ic inputs also header-field edits and CRC fixing."""

    def __init__(self, rng, l3ic, max_len=MAX_LEN):
        self.rng, self.l3ic, self.max_len = rng, l3ic, max_len

    def mutate(self, data, corpus):
        rng = self.rng
        buf = bytearray(data)
        if self.l3ic and rng.random() < 0.3:  # only edits inside chunks: the file stays parseable, its contents not
            for _ in range(rng.randint(1, 3)):
                buf = _mutate_chunk(rng, buf)
            return bytes(buf[:self.max_len])
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(11 if self.l3ic else 8)  # 9 and 10: inside a chunk, twice as often as the others
            if not buf:
                buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            at = rng.randrange(len(buf))
            if op == 0:
                buf[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                buf[at] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
            elif op == 2:
                size = rng.choice((1, 2, 4))
                value = rng.choice(_INTERESTING) & ((1 << 8 * size) - 1)
                buf[at:at + size] = value.to_bytes(size, "little")
            elif op == 3:
                buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            elif op == 4:
                del buf[at:at + rng.randint(1, 32)]
            elif op == 5:
                end = min(len(buf), at + rng.randint(1, 64))
                buf[rng.randrange(len(buf)):0] = buf[at:end]
            elif op == 6:
                del buf[rng.randrange(len(buf) + 1):]
            elif op == 7:
                other = rng.choice(corpus)
                cut = rng.randrange(len(other) + 1)
                buf = buf[:at] + bytearray(other[cut:cut + rng.randint(1, 256)]) + buf[at:]
            elif op >= 9:
                buf = _mutate_chunk(rng, buf)
            else:
                offset, size = rng.choice(_HEADER_FIELDS)
                if offset + size <= len(buf):
                    value = rng.choice(_INTERESTING) + rng.choice((0, 0, -1, 1))
                    buf[offset:offset + size] = (value % (1 << 8 * size)).to_bytes(size, "little")
        data = bytes(buf[:self.max_len])
        if self.l3ic and rng.random() < 0.5:
            data = fix_crcs(data)
        return data


def outcome(error):
    """An input's outcome with the numbers taken out: a new one is a sign that the input reached new code."""
    if error is None:
        return "ok"
    return type(error).__name__ + ":" + re.sub(r"\d+", "#", re.sub(r"'[^']*'", "'x'", str(error)))[:120]


# ---- running ---------------------------------------------------------------------------------
class Stats:
    def __init__(self):
        self.inputs = self.accepted = self.findings = self.crashes = 0
        self.unique = set()
        self.corpus = 0
        self.paths = {}  # code path -> inputs that reached it (Target.paths)


def _save_finding(folder, target, data, report, kind):
    os.makedirs(folder, exist_ok=True)
    name = "%s-%s-%s" % (target, kind, hashlib.sha1(data).hexdigest()[:16])
    with open(os.path.join(folder, name + ".bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(folder, name + ".txt"), "w") as f:
        f.write(report)
    return name


def _finding_key(error):
    frames = traceback.extract_tb(error.__traceback__)
    where = "%s:%d" % (os.path.basename(frames[-1].filename), frames[-1].lineno) if frames else "?"
    return type(error).__name__ + "@" + where


def fuzz_inprocess(target_name, iterations=None, seconds=None, seed=0, crashes=None, state=None, corpus_out=None,
                   skip=frozenset()):
    """The built-in fuzzer in this process: returns Stats.  ``state``: shared mmap for the parent (child mode);
    ``skip``: SHA-1 digests of inputs known to kill the process (they are not run again)."""
    target = make_target(target_name)
    rng = random.Random(seed)
    corpus = [s[:MAX_LEN] for s in target.seeds()]
    mutator = Mutator(rng, target.l3ic)
    seen, stats = set(), Stats()
    deadline = None if seconds is None else time.monotonic() + seconds
    seeds = list(corpus)
    queue = list(corpus)  # run the seeds as they are first
    while (iterations is None or stats.inputs < iterations) and (deadline is None or time.monotonic() < deadline):
        # half the time a seed, so that most inputs stay close enough to a valid file to get deep into it
        base = rng.choice(seeds) if rng.random() < 0.5 else rng.choice(corpus)
        data = queue.pop() if queue else mutator.mutate(base, corpus)
        if skip and hashlib.sha1(data).digest() in skip:
            continue
        if state is not None:
            _STATE.pack_into(state, 0, stats.inputs, stats.accepted, len(data))
            state[_STATE.size:_STATE.size + len(data)] = data
        error = None
        try:
            target.run(data)
        except target.allowed as e:
            error = e
        except Exception as e:  # a finding: anything but the runtime's own errors
            stats.findings += 1
            key = _finding_key(e)
            if key not in stats.unique and crashes:
                _save_finding(crashes, target_name, data, "".join(traceback.format_exception(type(e), e, e.__traceback__)), "exception")
            stats.unique.add(key)
            error = e
        stats.inputs += 1
        stats.accepted += error is None
        signature = outcome(error)
        if signature not in seen:
            seen.add(signature)
            if len(corpus) < 4000:
                corpus.append(data)
    if state is not None:
        _STATE.pack_into(state, 0, stats.inputs, stats.accepted, 0)
    stats.corpus = len(corpus)
    stats.paths = dict(getattr(target, "paths", {}))
    if corpus_out:
        os.makedirs(corpus_out, exist_ok=True)
        for data in corpus:
            with open(os.path.join(corpus_out, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
                f.write(data)
    return stats


def _fuzz_atheris(target_name, seconds, seed, crashes, state, corpus_dir, skip):
    """libFuzzer through atheris, in this (child) process; exits when done or at the first finding."""
    import atheris
    with atheris.instrument_imports(include=["l3ic"]):
        target = make_target(target_name)
    os.makedirs(corpus_dir, exist_ok=True)
    if not os.listdir(corpus_dir):
        for data in target.seeds():
            if target.l3ic:
                data += b"\x01"  # the control byte (see one_input)
            with open(os.path.join(corpus_dir, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
                f.write(data[:MAX_LEN])
    counter = [0, 0]  # inputs, accepted

    def one_input(data):
        if target.l3ic and data:  # the last byte is a control byte: if odd, the CRCs are made valid (see fix_crcs)
            data = fix_crcs(data[:-1]) if data[-1] & 1 else data[:-1]
        if skip and hashlib.sha1(data).digest() in skip:
            return
        _STATE.pack_into(state, 0, counter[0], counter[1], len(data))
        state[_STATE.size:_STATE.size + len(data)] = data
        counter[0] += 1
        try:
            target.run(data)
            counter[1] += 1
        except target.allowed:
            pass
        _STATE.pack_into(state, 0, counter[0], counter[1], 0)

    atheris.Setup([sys.argv[0], corpus_dir, "-max_total_time=%d" % max(1, int(seconds)), "-seed=%d" % (seed + 1),
                   "-max_len=%d" % MAX_LEN, "-artifact_prefix=%s/%s-" % (crashes, target_name), "-rss_limit_mb=4096",
                   "-print_final_stats=1"], one_input)
    atheris.Fuzz()


def _child_main(args):
    fse_dir = os.environ.get("L3IC_FUZZ_FSE_DIR")
    if fse_dir:  # the sanitizer build of l3ic._fse comes first
        import l3ic
        l3ic.__path__.insert(0, os.path.join(fse_dir, "l3ic"))
    if args.target != "_abort":
        import l3ic._fse
        if fse_dir and not l3ic._fse.__file__.startswith(fse_dir):
            raise SystemExit("the sanitizer build was not imported: %s" % l3ic._fse.__file__)
    with open(args.state, "r+b") as f:
        state = mmap.mmap(f.fileno(), 0)
    with open(args.skip) as f:
        skip = frozenset(bytes.fromhex(line) for line in f.read().split())
    if args.engine == "atheris":
        _fuzz_atheris(args.target, args.seconds, args.seed, args.crashes, state, args.corpus, skip)
        return 0
    stats = fuzz_inprocess(args.target, seconds=args.seconds, seed=args.seed, crashes=args.crashes, state=state,
                           corpus_out=args.corpus, skip=skip)
    print(json.dumps({"inputs": stats.inputs, "findings": stats.findings, "unique": sorted(stats.unique),
                      "corpus": stats.corpus, "paths": stats.paths}))
    return 0


def fuzz_target(target, seconds, engine, seed, crashes, env, work):
    """Fuzz one target for ``seconds`` in child processes, restarting after hard crashes; returns a summary dict."""
    os.makedirs(crashes, exist_ok=True)
    state_path = os.path.join(work, target + ".state")
    corpus = os.path.join(work, target + ".corpus")
    skip_path, killers = os.path.join(work, target + ".skip"), set()  # inputs that killed a child
    with open(state_path, "wb") as f:
        f.write(bytes(_STATE.size + MAX_LEN + 64))
    summary = {"target": target, "engine": engine, "inputs": 0, "accepted": 0, "findings": 0, "crashes": 0, "unique": set(),
               "children": 0, "corpus": 0, "paths": {}}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline - 1:
        left = deadline - time.monotonic()
        with open(skip_path, "w") as f:
            f.write("\n".join(sorted(killers)))
        command = [sys.executable, "-m", "benchmarks.fuzz", "--child", "--target", target, "--engine", engine,
                   "--seconds", "%.1f" % left, "--seed", str(seed + summary["children"]), "--state", state_path,
                   "--crashes", crashes, "--corpus", corpus, "--skip", skip_path]
        log_path = os.path.join(work, "%s.child%d.log" % (target, summary["children"]))
        with open(log_path, "wb") as log:
            child = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                                   timeout=left + 300)
        summary["children"] += 1
        with open(state_path, "rb") as f:
            raw = f.read()
        inputs, accepted, length = _STATE.unpack_from(raw)
        summary["inputs"] += inputs
        summary["accepted"] += accepted
        with open(log_path, "rb") as f:
            log_text = f.read().decode("utf-8", "replace")
        if child.returncode == 0 and engine == "builtin":
            report = json.loads(child.stdout.decode().strip().splitlines()[-1])
            summary["findings"] += report["findings"]
            summary["unique"].update(report["unique"])
            summary["corpus"] = report["corpus"]
            for path, n in report.get("paths", {}).items():
                summary["paths"][path] = summary["paths"].get(path, 0) + n
            continue
        if child.returncode == 0:  # libFuzzer ran out of time without a finding
            continue
        if "Traceback" in log_text and ("Uncaught Python exception" in log_text or engine == "builtin") \
                and "ERROR: AddressSanitizer" not in log_text and "runtime error:" not in log_text:
            summary["findings"] += 1
            kind = "exception"
        else:
            summary["crashes"] += 1
            kind = "crash"
        if not inputs and not length:  # died before running anything: a broken setup, not a finding
            raise SystemExit("the %s fuzzing child failed to start (exit %d):\n%s" % (target, child.returncode, log_text[-3000:]))
        data = raw[_STATE.size:_STATE.size + length]
        killers.add(hashlib.sha1(data).hexdigest())
        name = _save_finding(crashes, target, data, log_text[-20000:], kind)
        summary["unique"].add(kind + ":" + _crash_signature(log_text))
        print("  %s: %s (exit %d) on a %d-byte input, saved as %s" % (target, kind, child.returncode, len(data), name),
              flush=True)
    summary["unique"] = sorted(summary["unique"])
    return summary


def _crash_signature(log_text):
    for pattern in (r"ERROR: AddressSanitizer: ([\w-]+)", r"(runtime error: [^\n]{0,80})", r"^(\w+Error: [^\n]{0,80})",
                    r"(deadly signal)"):
        match = re.search(pattern, log_text, re.M)
        if match:
            return re.sub(r"0x[0-9a-f]+|\d+", "#", match.group(1))
    return "exit"


# ---- sanitizer build -------------------------------------------------------------------------
def sanitizer_build():
    """Build l3ic._fse with ASan + UBSan into a cache folder (once per source/flags); returns (folder, env)."""
    sources = [os.path.join(REPO, "csrc", "fse", n) for n in ("l3ic_fse.c", "l3ic_fse.h")] + [os.path.join(REPO, "build_fse.py")]
    digest = hashlib.sha256(SANITIZE_CFLAGS.encode() + sys.version.encode())
    for path in sources:
        with open(path, "rb") as f:
            digest.update(f.read())
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "l3ic")
    folder = os.path.join(cache, "fuzz-asan-" + digest.hexdigest()[:16])
    built = [n for n in os.listdir(os.path.join(folder, "l3ic")) if n.startswith("_fse") and n.endswith(".so")] \
        if os.path.isdir(os.path.join(folder, "l3ic")) else []
    if not built:
        print("building the FSE extension with %s into %s ..." % (SANITIZE_CFLAGS, folder), flush=True)
        env = dict(os.environ, L3IC_FSE_CFLAGS=SANITIZE_CFLAGS)
        script = ("import sys; sys.path.insert(0, %r); import build_fse; "
                  "print(build_fse.make_ffibuilder(absolute_paths=True).compile(tmpdir=%r))" % (REPO, folder))
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit("sanitizer build failed:\n" + (done.stderr or done.stdout)[-3000:])
        built = [n for n in os.listdir(os.path.join(folder, "l3ic")) if n.startswith("_fse") and n.endswith(".so")]
    library = os.path.join(folder, "l3ic", built[0])
    env = dict(os.environ, L3IC_FUZZ_FSE_DIR=folder, LD_PRELOAD=_asan_runtime(library), **SANITIZE_ENV)
    return folder, env


def _asan_runtime(library):
    """Path of the shared ASan runtime the built extension links against (what LD_PRELOAD must name)."""
    ldd = subprocess.run(["ldd", library], capture_output=True, text=True).stdout
    match = re.search(r"(\S*libasan\.so[.\d]*)\s+=>\s+(\S+)", ldd)
    if match:
        return match.group(2)
    for compiler in ("gcc", "cc", "clang"):
        if shutil.which(compiler):
            path = subprocess.run([compiler, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
            if os.path.isabs(path):
                return path
    raise SystemExit("cannot find the ASan runtime (libasan.so) that %s needs" % library)


_SELF_TEST = """
import numpy as np
from l3ic import fse
from l3ic._fse import ffi, lib
payload = bytes(8)                      # a RAW chunk needs 10 bytes for 16 symbols of 5 bits: lie about the size
src = ffi.from_buffer("uint8_t[]", payload)
modes, sizes = np.array([2], np.uint8), np.array([10], np.uint32)
out = np.empty(16, np.uint8)
lib.l3ic_fse_decode_channels(src, 10, ffi.from_buffer("uint8_t[]", modes), ffi.from_buffer("uint32_t[]", sizes),
                             1, 16, 0, 32, ffi.from_buffer("uint8_t[]", out, require_writable=True), ffi.NULL)
print("NOT DETECTED")
"""


def sanitizer_self_test(env):
    """A deliberate 2-byte overread through the extension must be reported by ASan: proof that it is active."""
    script = ("import os, l3ic; l3ic.__path__.insert(0, os.path.join(os.environ['L3IC_FUZZ_FSE_DIR'], 'l3ic'))\n"
              + _SELF_TEST)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if "AddressSanitizer: heap-buffer-overflow" not in done.stderr:
        raise SystemExit("sanitizer self-test failed: ASan did not report a deliberate overread\n"
                         + (done.stdout + done.stderr)[-3000:])
    print("sanitizer self-test: ASan reports a deliberate heap-buffer-overflow in l3ic_fse_decode_channels", flush=True)


# ---- command line ----------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="time per target (default 60)")
    p.add_argument("--target", default="all", choices=TARGETS + ("all", "_abort", "_raise"))
    p.add_argument("--engine", default="auto", choices=["auto", "atheris", "builtin"])
    p.add_argument("--sanitize", action="store_true", help="use an ASan + UBSan build of the FSE extension")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crashes", default="fuzz-findings", help="folder for the inputs of findings (default ./fuzz-findings)")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--state", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--skip", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child_main(args)
    if args.engine == "auto":
        try:
            import atheris  # noqa: F401
            args.engine = "builtin" if args.sanitize else "atheris"  # see the module docstring
        except ImportError:
            args.engine = "builtin"
    elif args.engine == "atheris" and args.sanitize:
        print("warning: with a preloaded libasan, atheris gets no coverage feedback (see the module docstring)",
              file=sys.stderr)
    args.crashes = os.path.abspath(args.crashes)
    env = dict(os.environ)
    sanitizer = "as set up by hand (L3IC_FUZZ_FSE_DIR)" if env.get("L3IC_FUZZ_FSE_DIR") else "none"
    if args.sanitize:
        _, env = sanitizer_build()
        sanitizer_self_test(env)
        sanitizer = "asan+ubsan"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    targets = TARGETS if args.target == "all" else (args.target,)
    work = tempfile.mkdtemp(prefix="l3ic-fuzz-")
    results = []
    try:
        for target in targets:
            start = time.monotonic()
            summary = fuzz_target(target, args.seconds, args.engine, args.seed, args.crashes, env, work)
            summary["seconds"] = time.monotonic() - start
            summary["sanitizer"] = sanitizer
            results.append(summary)
            print("%s: %d inputs in %.0f s (%.0f/s; %d accepted as valid), %d findings (Python exceptions), %d crashes, "
                  "engine %s, sanitizer %s%s" % (target, summary["inputs"], summary["seconds"],
                                                 summary["inputs"] / max(summary["seconds"], 1e-9), summary["accepted"],
                                                 summary["findings"],
                                      summary["crashes"], args.engine, sanitizer,
                                      "; " + ", ".join(summary["unique"]) if summary["unique"] else ""), flush=True)
            if summary["paths"]:
                print("  %s paths: %s" % (target, ", ".join("%s %d" % kv for kv in sorted(summary["paths"].items()))),
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if any(r["findings"] or r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
