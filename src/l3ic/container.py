"""The l3ic container, bitstream format version 3 (byte-exact spec: docs/FORMAT.md).

The container knows the image geometry, the model identity, the tile grid and
where every (tile, channel) chunk lies; it never looks inside a chunk (that is
the FSE layer's job, l3ic/fse.py).  Its two promises:

* Random access: the channel index at the front gives every chunk's length, so
  any subset of chunks is located by arithmetic and read without touching the
  others (a preview decodes 8 of 64 channels; a region decode reads some tiles).
* Hostile input fails fast: every length and count is checked against the real
  size of the data before anything is allocated or decoded, the header and
  index are covered by one CRC32 checked before any chunk is handed out, each
  chunk and side-data record has its own CRC32, and every malformed stream
  raises ``FormatError`` with a one-line message - never another exception.

Pure Python + numpy + zlib + zstandard; runs on Python >= 3.8, numpy >= 1.19.
"""
import struct
import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from l3ic.errors import FormatError, first_line
from l3ic.quality import MAX_MODEL_QUALITY, QUALITY_SCALE

MAGIC = b"L3IC"
READABLE_VERSIONS = (1, 2, 3)  # 1 is 2 without the CONTEXT mode; 3 adds the hyperprior's z chunks and STATIC mode

MAX_PIXELS = 1 << 31
"""Default limit on width * height accepted by ``L3icFile.parse`` (override per call)."""

MAX_SIDE_DATA = 256 << 20
"""Default limit on the total decompressed size of all side-data records (bytes)."""

MAX_MODEL_NAME = 64
FLAG_MARGIN = 0x0001  # flags bit 0: the latent covers the image plus a margin of whole cells on both sides of an axis
FLAG_QUALITY = 0x0002  # flags bit 1: a quality field follows the hyperprior fields (gained latents, l3ic.quality)
FLAG_LOSSLESS = 0x0004  # flags bit 2: no latent; the pixels are in the LOSSLESS side-data record (tiny images)
FLAG_ADAPTIVE_Z = 0x0008  # flags bit 3: the ẑ chunk carries its own table (mode FSE or CONTEXT); ``write`` sets it
FLAG_MEAN_SHIFT = 0x0010  # flags bit 4: latents are coded as s = ŷ - mean (the hyperprior's), not ŷ - floor(mean)
KNOWN_FLAGS = FLAG_MARGIN | FLAG_QUALITY | FLAG_LOSSLESS | FLAG_ADAPTIVE_Z | FLAG_MEAN_SHIFT
_PER_CHUNK_MODES = (0, 4)  # FSE and CONTEXT: chunks that carry their own tables (l3ic.fse)
LOSSLESS = "PIXL"  # the side-data record of a lossless file: a filter byte, then the filtered samples
MAX_QUALITY = MAX_MODEL_QUALITY * QUALITY_SCALE  # the quality field: a model's own q in hundredths
MAX_MARGIN = 8  # latent cells of margin on each side, at most (a file cannot claim a latent much larger than its image)
COLOUR_MODES = ("RGB", "L")  # colour mode byte -> name
# Coding modes by version: FSE 0, CONSTANT 1, RAW 2, EMPTY 3, CONTEXT 4 (version 2), STATIC 5 (version 3);
# chunk contents are the business of l3ic/fse.py and the entropy coders (l3ic/entropy/).
_CODING_MODES = {1: frozenset(range(4)), 2: frozenset(range(5)), 3: frozenset(range(6))}
_ZSTD_LEVEL = 10  # side data is small (ICC, EXIF) or compresses well (alpha): a middling level

# Fixed header, offsets 0..56: magic, version, flags, width, height, colour mode,
# stride, codebook size, codebook min, channels, latent h/w, tile h/w,
# decoder hash, side-data count, model-name length.
_FIXED = struct.Struct("<4sBHIIBBHhHIIII16sBB")
_HYPER = struct.Struct("<HB")  # version 3 only, right after the fixed header: z channels, hyper stride
_QUALITY = struct.Struct("<H")  # version 3 with FLAG_QUALITY, right after _HYPER
_SIDE = struct.Struct("<4sBIII")  # tag, compression, stored length, decompressed length, CRC32
_U32 = struct.Struct("<I")
_MIN_ENTRY = 6  # smallest channel-index entry: mode u8 + 1-byte varint + CRC32
_ZSTD = 1


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class Header:
    """Everything in the fixed header, validated on construction.

    Geometry is in latent units except ``width``/``height`` (pixels).  The
    latent size must be ``ceil(size / stride)``: it is redundant, and kept so
    that an encoder and the file both state it and a mismatch is caught.  Tiles
    form a row-major grid of ``tile_h`` x ``tile_w`` latent cells over the
    latent, with smaller tiles on the bottom/right edge; a whole-image file has
    ``tile_h, tile_w == latent_h, latent_w``.  Invalid values raise ValueError.
    """

    width: int
    height: int
    mode: str  # "RGB" or "L"
    model_name: str
    decoder_hash: bytes  # the model identity (l3ic.model.model_identity): which decoder the file needs
    codebook_size: int  # L: symbols are indices 0..L-1
    codebook_min: int  # the value of index 0; value = codebook_min + index
    channels: int
    stride: int
    latent_h: int
    latent_w: int
    tile_h: int
    tile_w: int
    z_channels: int = 0  # format 3: channels of the hyperprior's side information ẑ; 0 = format 2
    hyper_stride: int = 0  # format 3: ẑ has one cell per hyper_stride x hyper_stride latent cells
    flags: int = 0  # FLAG_MARGIN: latent_h = ceil(height / stride) + 2 * margin_y (likewise w), the image at the margin
    quality: int = 0  # FLAG_QUALITY: q in hundredths (0..MAX_QUALITY) whose gains the latents were coded with; else 0

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> Optional[str]:
        name = self.model_name.encode("utf-8")
        if not (1 <= self.width < 1 << 32 and 1 <= self.height < 1 << 32):
            return "image size %dx%d is outside 1..2^32-1" % (self.width, self.height)
        if self.mode not in COLOUR_MODES:
            return "colour mode %r is not one of %s" % (self.mode, "/".join(COLOUR_MODES))
        if not 1 <= len(name) <= MAX_MODEL_NAME:
            return "model name must be 1..%d bytes of UTF-8, got %d" % (MAX_MODEL_NAME, len(name))
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in self.model_name):
            return "model name %r contains control characters" % self.model_name
        if not (isinstance(self.decoder_hash, bytes) and len(self.decoder_hash) == 16):
            return "decoder hash must be 16 bytes"
        if not 2 <= self.codebook_size <= 256:
            return "codebook size %d is outside 2..256" % self.codebook_size
        if not -(1 << 15) <= self.codebook_min <= (1 << 15) - self.codebook_size:
            return "codebook %d..%d does not fit in int16" % (
                self.codebook_min, self.codebook_min + self.codebook_size - 1)
        if not 1 <= self.channels < 1 << 16:
            return "channel count %d is outside 1..65535" % self.channels
        if not 1 <= self.stride < 1 << 8:
            return "stride %d is outside 1..255" % self.stride
        if self.flags & ~KNOWN_FLAGS or (self.flags and not self.z_channels):
            return "unsupported flags 0x%04x (version 3 knows 0x%04x)" % (self.flags, KNOWN_FLAGS)
        if self.flags & FLAG_LOSSLESS and self.flags != FLAG_LOSSLESS:
            return "the lossless flag goes alone (flags 0x%04x)" % self.flags
        if not (0 <= self.quality <= MAX_QUALITY and (self.flags & FLAG_QUALITY or self.quality == 0)):
            return "quality %d is outside 0..%d, or given without FLAG_QUALITY" % (self.quality, MAX_QUALITY)
        expected = (_ceil_div(self.height, self.stride), _ceil_div(self.width, self.stride))
        extra = (self.latent_h - expected[0], self.latent_w - expected[1])
        if self.flags & FLAG_MARGIN:
            if not all(0 <= e <= 2 * MAX_MARGIN and e % 2 == 0 for e in extra) or extra == (0, 0):
                return "latent size %dx%d is not a %dx%d image at stride %d plus a margin of 0..%d cells (not both 0)" % (
                    self.latent_h, self.latent_w, self.width, self.height, self.stride, MAX_MARGIN)
        elif extra != (0, 0):
            return "latent size %dx%d does not match a %dx%d image at stride %d (expected %dx%d)" % (
                self.latent_h, self.latent_w, self.width, self.height, self.stride, *expected)
        if not (1 <= self.tile_h <= self.latent_h and 1 <= self.tile_w <= self.latent_w):
            return "tile size %dx%d is outside 1x1..%dx%d (the latent size)" % (
                self.tile_h, self.tile_w, self.latent_h, self.latent_w)
        if self.n_tiles * self.channels + (1 if self.z_channels else 0) >= 1 << 32:
            return "%d tiles x %d channels is 2^32 chunks or more" % (self.n_tiles, self.channels)
        if self.z_channels or self.hyper_stride:
            return self._hyper_problem()
        return None

    def _hyper_problem(self) -> Optional[str]:
        if not (1 <= self.z_channels < 1 << 16 and 1 <= self.hyper_stride < 1 << 8):
            return "z channels %d / hyper stride %d outside 1..65535 / 1..255" % (self.z_channels, self.hyper_stride)
        for tile, latent in ((self.tile_h, self.latent_h), (self.tile_w, self.latent_w)):
            if tile != latent and tile % self.hyper_stride:
                return "tile size %d is not a multiple of the hyper stride %d" % (tile, self.hyper_stride)
        return None

    @property
    def n_chunks(self) -> int:
        """Chunks in the file: the ẑ chunk (format 3) and one per tile and channel; none in a lossless file."""
        if self.flags & FLAG_LOSSLESS:
            return 0
        return self.n_tiles * self.channels + (1 if self.z_channels else 0)

    @property
    def mean_shifted(self) -> bool:
        """Whether the latents are coded about the hyperprior's mean (FLAG_MEAN_SHIFT): ŷ are then quarters."""
        return bool(self.flags & FLAG_MEAN_SHIFT)

    @property
    def version(self) -> int:
        """The format version this header is written in: 3 with a hyperprior, else 2."""
        return 3 if self.z_channels else 2

    @property
    def margin(self) -> Tuple[int, int]:
        """(y, x) latent cells of margin above / left of the image (FLAG_MARGIN; else (0, 0)): the image's pixel
        (0, 0) is the decoded latent's pixel (margin_y * stride, margin_x * stride)."""
        return ((self.latent_h - _ceil_div(self.height, self.stride)) // 2,
                (self.latent_w - _ceil_div(self.width, self.stride)) // 2)

    @property
    def z_shape(self) -> Tuple[int, int]:
        """(h, w) of the ẑ map (format 3)."""
        return _ceil_div(self.latent_h, self.hyper_stride), _ceil_div(self.latent_w, self.hyper_stride)

    @property
    def tile_rows(self) -> int:
        return _ceil_div(self.latent_h, self.tile_h)

    @property
    def tile_cols(self) -> int:
        return _ceil_div(self.latent_w, self.tile_w)

    @property
    def n_tiles(self) -> int:
        return self.tile_rows * self.tile_cols

    def tile_rect(self, index: int) -> Tuple[int, int, int, int]:
        """(y0, x0, h, w) of tile ``index`` (row-major) in latent cells; edge tiles are clipped."""
        if not 0 <= index < self.n_tiles:
            raise IndexError("tile %d out of range (%d tiles)" % (index, self.n_tiles))
        row, col = divmod(index, self.tile_cols)
        y0, x0 = row * self.tile_h, col * self.tile_w
        return y0, x0, min(self.tile_h, self.latent_h - y0), min(self.tile_w, self.latent_w - x0)


@dataclass(frozen=True, eq=False)
class TileChunks:
    """One tile's coded channels exactly as the FSE layer produces and consumes them.

    ``modes[i]`` and ``sizes[i]`` describe the i-th chunk; ``payload`` is the
    chunks back to back.  The writer takes one per tile with all channels in
    order; the reader returns one for whichever channels were asked for, in the
    order asked.
    """

    modes: np.ndarray  # uint8, (k,): coding mode per chunk
    sizes: np.ndarray  # uint32, (k,): byte length per chunk
    payload: bytes

    def __post_init__(self):
        if self.modes.ndim != 1 or self.modes.shape != self.sizes.shape:
            raise ValueError("modes %s and sizes %s must be 1-D and the same length"
                             % (self.modes.shape, self.sizes.shape))
        total = int(self.sizes.sum(dtype=np.uint64))
        if total != len(self.payload):
            raise ValueError("chunk sizes add up to %d bytes but the payload has %d" % (total, len(self.payload)))


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first, high bit = more."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _side_record(tag: str, data: bytes) -> Tuple[bytes, bytes]:
    """(table entry, stored bytes) for one side-data record; zstd only when it is smaller."""
    if not (isinstance(tag, str) and len(tag) == 4 and all(" " <= c <= "~" for c in tag)):
        raise ValueError("side-data tag %r is not 4 printable ASCII characters" % (tag,))
    raw = bytes(data)
    import zstandard  # only files with side data need it (20-30 ms of a CLI run's start-up)
    stored, compression = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(raw), _ZSTD
    if len(stored) >= len(raw):
        stored, compression = raw, 0
    entry = _SIDE.pack(tag.encode("ascii"), compression, len(stored), len(raw), zlib.crc32(stored))
    return entry, stored


def write(header: Header, tiles: Sequence[TileChunks],
          side_data: Optional[Mapping[str, bytes]] = None, z_chunks: Optional[TileChunks] = None) -> bytes:
    """The complete l3ic file for ``header``, one ``TileChunks`` per tile (row-major), and side data.

    A header with ``z_channels`` makes a format-3 file, which needs
    ``z_chunks``: the coded ẑ, one chunk holding all its channels (every
    tile needs all of ẑ), stored before the tiles.

    ``side_data`` maps 4-character ASCII tags (e.g. "ICCP", "EXIF") to bytes;
    each record is stored zstd-compressed when that is smaller.  Inputs that
    would make an invalid file raise ValueError.  The flag FLAG_ADAPTIVE_Z is
    the writer's: it is set exactly when the ẑ chunk carries its own table.
    """
    side_data = side_data or {}
    adaptive_z = z_chunks is not None and int(z_chunks.modes[0]) in _PER_CHUNK_MODES
    header = replace(header, flags=header.flags & ~FLAG_ADAPTIVE_Z | (FLAG_ADAPTIVE_Z if adaptive_z else 0))
    lossless = bool(header.flags & FLAG_LOSSLESS)
    if lossless != (LOSSLESS in side_data) or (lossless and (tiles or z_chunks is not None)):
        raise ValueError("a lossless file has the %s record and no chunks, and only it has that record" % LOSSLESS)
    if not lossless and len(tiles) != header.n_tiles:
        raise ValueError("header has %d tiles, got %d" % (header.n_tiles, len(tiles)))
    if not lossless and (z_chunks is not None) != bool(header.z_channels):
        raise ValueError("z chunks are needed exactly when the header has z channels (format 3)")
    if len(side_data) > 255:
        raise ValueError("at most 255 side-data records, got %d" % len(side_data))
    if sum(len(v) for v in side_data.values()) > MAX_SIDE_DATA:
        raise ValueError("side data exceeds %d bytes, which readers refuse by default" % MAX_SIDE_DATA)
    version = header.version
    groups = ([z_chunks] if z_chunks is not None else []) + list(tiles)
    modes, lengths, crcs = bytearray(), [], []
    for t, tile in enumerate(groups):
        expected = 1 if z_chunks is not None and t == 0 else header.channels
        if tile.modes.shape != (expected,):
            raise ValueError("chunk group %d has %d chunks, expected %d" % (t, len(tile.modes), expected))
        if not set(tile.modes.tolist()) <= _CODING_MODES[version]:
            raise ValueError("chunk group %d has a coding mode outside %s (format %d)"
                             % (t, sorted(_CODING_MODES[version]), version))
        payload, pos = memoryview(tile.payload), 0
        for size in tile.sizes.tolist():
            if size >= 1 << 32:
                raise ValueError("chunk group %d has a chunk of %d bytes (max 2^32-1)" % (t, size))
            lengths.append(_varint(size))
            crcs.append(_U32.pack(zlib.crc32(payload[pos:pos + size])))
            pos += size
        modes += tile.modes.astype(np.uint8).tobytes()
    side = [_side_record(tag, data) for tag, data in side_data.items()]
    name = header.model_name.encode("utf-8")
    head = b"".join([
        _FIXED.pack(MAGIC, version, header.flags, header.width, header.height, COLOUR_MODES.index(header.mode),
                    header.stride, header.codebook_size, header.codebook_min, header.channels,
                    header.latent_h, header.latent_w, header.tile_h, header.tile_w,
                    header.decoder_hash, len(side), len(name)),
        _HYPER.pack(header.z_channels, header.hyper_stride) if version == 3 else b"",
        _QUALITY.pack(header.quality) if header.flags & FLAG_QUALITY else b"",
        name, *(entry for entry, _ in side), bytes(modes), *lengths, *crcs])
    return b"".join([head, _U32.pack(zlib.crc32(head)), *(t.payload for t in groups),
                     *(stored for _, stored in side)])


def _truncated(what: str, end: int, size: int) -> FormatError:
    return FormatError("truncated l3ic file: %s ends at byte %d but the file has %d bytes"
                       % (what, end, size))


def _decode_varints(buf: np.ndarray, start: int, count: int, limit: int) -> Tuple[np.ndarray, int]:
    """``count`` consecutive LEB128 lengths from ``buf[start:limit]``, vectorised.

    Returns (values as uint64, end offset).  The index can hold millions of
    entries for a huge tiled image, so this must not loop in Python.
    """
    if count == 0:  # a lossless file
        return np.zeros(0, np.uint64), start
    window = buf[start:min(limit, start + 5 * count)]
    ends = np.flatnonzero(window < 0x80)[:count]  # last byte of each varint
    if len(ends) < count:
        if len(window) < 5 * count:
            raise FormatError("truncated l3ic file: channel index runs past the end of the file")
        raise FormatError("corrupt l3ic file: chunk length varint longer than 5 bytes")
    starts = np.concatenate(([0], ends[:-1] + 1))
    nbytes = ends - starts + 1
    if int(nbytes.max()) > 5:
        raise FormatError("corrupt l3ic file: chunk length varint longer than 5 bytes")
    if np.any((window[ends] == 0) & (nbytes > 1)):
        raise FormatError("corrupt l3ic file: chunk length varint is not minimal")
    digits = window[:ends[-1] + 1].astype(np.uint64) & np.uint64(0x7F)
    shifts = (np.arange(len(digits)) - np.repeat(starts, nbytes)).astype(np.uint64) * np.uint64(7)
    values = np.add.reduceat(digits << shifts, starts)
    if int(values.max()) >= 1 << 32:
        raise FormatError("corrupt l3ic file: chunk length of 2^32 bytes or more")
    return values, start + int(ends[-1]) + 1


def _unzstd(stored: memoryview, size: int, tag: str) -> bytes:
    """Decompress a side-data record, producing at most ``size + 1`` bytes whatever it claims."""
    import zstandard
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(stored, read_across_frames=True)
        data = reader.read(size + 1)
    except zstandard.ZstdError as e:
        raise FormatError("corrupt l3ic file: side data %r does not decompress (%s)" % (tag, e))
    if len(data) != size:
        raise FormatError("corrupt l3ic file: side data %r decompresses to %s bytes, expected %d"
                          % (tag, "more than %d" % size if len(data) > size else len(data), size))
    return data


def _fields(mv: memoryview) -> Tuple[dict, int, int]:
    """(the header's fields by ``Header``'s names, the mode as its byte, with side_count and name_len; the
    version; where the model name starts), checked as far as they can be before the header CRC."""
    size = len(mv)
    if mv[:4] != MAGIC:
        raise FormatError("not an l3ic file (bad magic)")
    if size < 5:
        raise _truncated("version byte", 5, size)
    version = mv[4]
    if version not in READABLE_VERSIONS:
        raise FormatError("unsupported l3ic format version %d (this runtime reads versions %s)"
                          % (version, ", ".join(map(str, READABLE_VERSIONS))))
    if size < _FIXED.size:
        raise _truncated("fixed header", _FIXED.size, size)
    names = ("flags width height mode stride codebook_size codebook_min channels latent_h latent_w tile_h tile_w "
             "decoder_hash side_count name_len").split()
    fields = dict(zip(names, _FIXED.unpack_from(mv)[2:]))
    flags = fields["flags"]
    if flags & ~KNOWN_FLAGS or (flags and version < 3):
        raise FormatError("unsupported l3ic flags 0x%04x (this runtime knows 0x%04x, in version 3)" % (flags, KNOWN_FLAGS))
    if 0 in [fields[k] for k in ("channels", "latent_h", "latent_w", "tile_h", "tile_w")]:
        raise FormatError("invalid l3ic header: zero channel count, latent size or tile size")
    fields.update(z_channels=0, hyper_stride=0, quality=0)
    name_start = _FIXED.size
    if version == 3:
        if size < _FIXED.size + _HYPER.size:
            raise _truncated("hyperprior header", _FIXED.size + _HYPER.size, size)
        fields["z_channels"], fields["hyper_stride"] = _HYPER.unpack_from(mv, _FIXED.size)
        name_start += _HYPER.size
        if not (fields["z_channels"] and fields["hyper_stride"]):
            raise FormatError("invalid l3ic header: format 3 with zero z channels or hyper stride")
    if flags & FLAG_QUALITY:
        if size < name_start + _QUALITY.size:
            raise _truncated("quality field", name_start + _QUALITY.size, size)
        fields["quality"], = _QUALITY.unpack_from(mv, name_start)
        name_start += _QUALITY.size
    return fields, version, name_start


def _checked_index(mv: memoryview, index: int, count: int) -> Tuple[np.ndarray, int]:
    """(the chunk lengths, where their CRCs start) of a channel index of ``count`` entries at ``index``, after
    checking the header CRC that follows them."""
    size = len(mv)
    if index + _MIN_ENTRY * count + 4 > size:
        raise _truncated("channel index (%d entries)" % count, index + _MIN_ENTRY * count + 4, size)
    lengths, crc_start = _decode_varints(np.frombuffer(mv, np.uint8), index + count, count, size - 4 * count - 4)
    head_end = crc_start + 4 * count
    if zlib.crc32(mv[:head_end]) != _U32.unpack_from(mv, head_end)[0]:
        raise FormatError("corrupt l3ic file: header checksum mismatch")
    return lengths, crc_start


def _header(fields: dict, name: memoryview, max_pixels: int) -> Header:
    """The ``Header`` of checked fields and the model name's bytes; FormatError where it is invalid or too large."""
    if fields["mode"] >= len(COLOUR_MODES):
        raise FormatError("invalid l3ic header: colour mode %d is reserved" % fields["mode"])
    try:
        header = Header(**dict(fields, mode=COLOUR_MODES[fields["mode"]], model_name=bytes(name).decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError("invalid l3ic header: %s" % first_line(e))
    if header.width * header.height > max_pixels:
        raise FormatError("l3ic image is %dx%d, over the limit of %d pixels" % (header.width, header.height, max_pixels))
    return header


def _side_records(mv: memoryview, table: int, index: int, pos: int, max_side_data: int) -> list:
    """(tag, compression, offset, stored length, raw length, crc) of each side-data record in the table at
    ``table``..``index``, stored from ``pos`` on to the end of the file; FormatError for a bad table."""
    side, total_raw = [], 0
    for tag, compression, stored_len, raw_len, crc in _SIDE.iter_unpack(mv[table:index]):
        if not all(0x20 <= b <= 0x7E for b in tag):
            raise FormatError("invalid l3ic header: side-data tag %r is not printable ASCII" % tag)
        tag = tag.decode("ascii")
        if tag in (rec[0] for rec in side):
            raise FormatError("invalid l3ic header: side-data tag %r appears twice" % tag)
        if compression > _ZSTD or (compression == 0 and stored_len != raw_len):
            raise FormatError("invalid l3ic header: side data %r has compression %d with %d "
                              "bytes stored for %d" % (tag, compression, stored_len, raw_len))
        side.append((tag, compression, pos, stored_len, raw_len, crc))
        pos += stored_len
        total_raw += raw_len
    if total_raw > max_side_data:
        raise FormatError("l3ic side data is %d bytes, over the limit of %d" % (total_raw, max_side_data))
    if pos > len(mv):
        raise _truncated("payload and side data", pos, len(mv))
    if pos < len(mv):
        raise FormatError("corrupt l3ic file: %d bytes of trailing garbage after the last record" % (len(mv) - pos))
    return side


class L3icFile:
    """A parsed l3ic file: the header plus a view over the original bytes (nothing is copied).

    Made by ``L3icFile.parse``.  ``parse`` checks all structure up front (magic, version, flags, header CRC,
    geometry, every length against the data size), so afterwards only chunk
    and side-data contents can still be bad, and those are CRC-checked when read.
    """

    def __init__(self, header: Header, version: int, data: memoryview, modes: np.ndarray,
                 offsets: np.ndarray, crcs: np.ndarray, side: Sequence[tuple]):
        self.header = header
        self.version = version  # the file's format version, one of READABLE_VERSIONS
        self._data = data
        # Chunk i: the ẑ chunk first (format 3), then tile by tile, channel by channel.
        self._modes = modes  # (1 + n_tiles * channels,) uint8 (no ẑ chunk before format 3)
        self._offsets = offsets  # (... + 1,) int64: chunk i is data[offsets[i]:offsets[i + 1]]
        self._crcs = crcs  # (...,) uint32
        self._side = side  # (tag, compression, offset, stored length, raw length, crc) per record
        self.side_tags = tuple(rec[0] for rec in side)  # type: Tuple[str, ...]

    @classmethod
    def parse(cls, data, max_pixels: int = MAX_PIXELS, max_side_data: int = MAX_SIDE_DATA) -> "L3icFile":
        """Validate ``data`` (bytes, bytearray, memoryview, mmap) and index it; FormatError if malformed.

        ``max_pixels`` bounds width * height and ``max_side_data`` the total
        decompressed side data, so that a valid but absurd file is refused
        before a caller allocates for it.
        """
        mv = memoryview(data).cast("B")
        fields, version, name_start = _fields(mv)
        # Layout first, so the header CRC is checked before the fields are interpreted.
        table = name_start + fields.pop("name_len")
        index = table + fields.pop("side_count") * _SIDE.size
        count = 0 if fields["flags"] & FLAG_LOSSLESS else (
            _ceil_div(fields["latent_h"], fields["tile_h"]) * _ceil_div(fields["latent_w"], fields["tile_w"])
            * fields["channels"] + (1 if fields["z_channels"] else 0))
        lengths, crc_start = _checked_index(mv, index, count)
        header = _header(fields, mv[name_start:table], max_pixels)
        modes = np.frombuffer(mv, np.uint8)[index:index + count]
        # the modes present; np.bincount, not np.unique, which imports numpy.ma (~10 ms of every CLI run)
        bad = sorted(set(np.flatnonzero(np.bincount(modes, minlength=1)).tolist()) - _CODING_MODES[version])
        if bad:
            raise FormatError("corrupt l3ic file: unknown coding mode %d for format version %d in channel index"
                              % (bad[0], version))
        if header.z_channels and count and bool(header.flags & FLAG_ADAPTIVE_Z) != (int(modes[0]) in _PER_CHUNK_MODES):
            raise FormatError("corrupt l3ic file: the ẑ chunk's mode %d does not match the adaptive-ẑ flag" % modes[0])
        # Fewer than 2^32 chunks (Header checks it) of < 2^32 bytes: the sum fits in uint64.
        ends = np.cumsum(lengths, dtype=np.uint64)
        payload_start = crc_start + 4 * count + 4
        side = _side_records(mv, table, index, payload_start + (int(ends[-1]) if count else 0), max_side_data)
        if (header.flags & FLAG_LOSSLESS) != (LOSSLESS in (rec[0] for rec in side)) * FLAG_LOSSLESS:
            raise FormatError("corrupt l3ic file: the lossless flag and the %s record go together" % LOSSLESS)
        offsets = np.concatenate((np.zeros(1, np.uint64), ends)).astype(np.int64) + payload_start  # <= size
        crcs = np.frombuffer(mv[crc_start:crc_start + 4 * count], "<u4")
        return cls(header, version, mv, modes, offsets, crcs, side)

    def tile_chunks(self, tile: int, channels: Optional[Iterable[int]] = None) -> TileChunks:
        """The chunks of ``channels`` (default all, in order) of ``tile``, in the order asked, CRC-checked.

        Only the requested chunks are read, so a preview or region decode costs
        in proportion to what it uses.
        """
        n_tiles, n_channels = self.header.n_tiles, self.header.channels
        if not 0 <= tile < n_tiles:
            raise IndexError("tile %d out of range (%d tiles)" % (tile, n_tiles))
        first = 1 if self.header.z_channels else 0
        return self._chunks(first + tile * n_channels, n_channels, channels, "tile %d" % tile)

    def z_chunks(self) -> TileChunks:
        """The ẑ chunk (format 3: one chunk, all z channels), CRC-checked."""
        if not self.header.z_channels:
            raise ValueError("a format-%d file has no z chunk" % self.version)
        return self._chunks(0, 1, None, "z")

    def _chunks(self, first: int, n_channels: int, channels: Optional[Iterable[int]], where: str) -> TileChunks:
        wanted = list(range(n_channels) if channels is None else channels)
        entries = np.array(wanted, np.int64) + first
        parts = []
        for channel, i in zip(wanted, entries.tolist()):
            if not 0 <= channel < n_channels:
                raise IndexError("channel %d out of range (%d channels)" % (channel, n_channels))
            chunk = self._data[self._offsets[i]:self._offsets[i + 1]]
            if zlib.crc32(chunk) != self._crcs[i]:
                raise FormatError("corrupt l3ic file: checksum mismatch in %s channel %d" % (where, channel))
            parts.append(chunk)
        sizes = (self._offsets[entries + 1] - self._offsets[entries]).astype(np.uint32)
        return TileChunks(self._modes[entries], sizes, b"".join(parts))

    @cached_property
    def side_data(self) -> Dict[str, bytes]:
        """All side-data records, tag -> bytes, CRC-checked and decompressed on first access.

        Lazy, so that a caller that wants only pixels (or only the header) never
        pays for, or fails on, metadata it does not use.
        """
        return {rec[0]: self._read_side(rec) for rec in self._side}

    def side_record(self, tag: str) -> Optional[bytes]:
        """One side-data record (CRC-checked, decompressed), or None if the file has none with this tag.

        Reads only that record: showing a small record of a file with a large
        alpha plane does not decompress the alpha plane.
        """
        for rec in self._side:
            if rec[0] == tag:
                return self._read_side(rec)
        return None

    def _read_side(self, rec) -> bytes:
        tag, compression, offset, stored_len, raw_len, crc = rec
        stored = self._data[offset:offset + stored_len]
        if zlib.crc32(stored) != crc:
            raise FormatError("corrupt l3ic file: checksum mismatch in side data %r" % tag)
        return _unzstd(stored, raw_len, tag) if compression == _ZSTD else bytes(stored)
