"""Tests of the l3ic container (l3ic/container.py) against docs/FORMAT.md.

Three groups: round trips (one tile, many ragged tiles, channel subsets, side
data); conformance (an independent builder written from the spec, and the
worked example in FORMAT.md); hostile input, where every truncation, every byte
position corrupted, random streams and crafted headers must raise FormatError
quickly and without allocating for the sizes they claim.
"""
import hashlib
import os
import re
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard

from l3ic.container import MAX_SIDE_DATA, Header, L3icFile, TileChunks, write
from l3ic.reader import read_latents
from l3ic.errors import FormatError

FIXED = struct.Struct("<4sBHIIBBHhHIIII16sBB")  # the fixed header, from the table in FORMAT.md
IDENTITY = hashlib.sha256(b"onnx").digest()[:16]  # a 16-byte model identity, as a format-2 file records one
FIELDS = ("magic version flags width height mode stride codebook_size codebook_min channels "
          "latent_h latent_w tile_h tile_w decoder_hash side_count name_len").split()


def make_header(**overrides):
    fields = dict(width=640, height=480, mode="RGB", model_name="seed-v1", decoder_hash=IDENTITY,
                  codebook_size=32, codebook_min=-15, channels=8, stride=16, tile_h=30, tile_w=40)
    fields.update(overrides)
    if fields["stride"] > 0:
        fields.setdefault("latent_h", -(-fields["height"] // fields["stride"]))
        fields.setdefault("latent_w", -(-fields["width"] // fields["stride"]))
    return Header(**fields)


def random_tiles(header, rng):
    """One TileChunks per tile with random modes, lengths (some 0) and bytes."""
    tiles = []
    for _ in range(header.n_tiles):
        sizes = rng.integers(0, 40, header.channels).astype(np.uint32)
        payload = rng.integers(0, 256, int(sizes.sum())).astype(np.uint8).tobytes()
        tiles.append(TileChunks(rng.integers(0, 4, header.channels).astype(np.uint8), sizes, payload))
    return tiles


def split(tile):
    """The chunks of a TileChunks as a list of bytes."""
    ends = np.cumsum(tile.sizes.astype(np.int64))
    return [tile.payload[e - s:e] for s, e in zip(tile.sizes.tolist(), ends.tolist())]


def read_all(data, **limits):
    """Everything a decoder could read from ``data``: parse, every chunk, all side data."""
    f = L3icFile.parse(data, **limits)
    return f, [f.tile_chunks(t) for t in range(f.header.n_tiles)], f.side_data


def leb128(n):
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n >= 0x80 else 0)])
        n >>= 7
        if not n:
            return out


def build(name=b"tiny", side=(), chunks=None, modes=None, lengths=None, crcs=None, **fields):
    """A file assembled field by field from FORMAT.md, independently of the writer.

    Defaults: the 20x12 example geometry with 2 channels in 1x2 tiles, each chunk
    one CONSTANT byte.  ``side`` is a list of (table entry, stored bytes).  Any
    field, the index arrays and the side table can be overridden with invalid
    values; the header CRC is always correct, so checks behind it are reached.
    """
    f = dict(magic=b"L3IC", version=2, flags=0, width=20, height=12, mode=0, stride=8,
             codebook_size=32, codebook_min=-15, channels=2, latent_h=2, latent_w=3, tile_h=2,
             tile_w=2, decoder_hash=bytes(16), side_count=len(side), name_len=len(name))
    f.update(fields)
    chunks = [b"\x07"] * 4 if chunks is None else chunks
    modes = bytes([1] * len(chunks)) if modes is None else modes
    lengths = b"".join(leb128(len(c)) for c in chunks) if lengths is None else lengths
    crcs = b"".join(struct.pack("<I", zlib.crc32(c)) for c in chunks) if crcs is None else crcs
    head = (FIXED.pack(*(f[k] for k in FIELDS)) + name + b"".join(e for e, _ in side)
            + modes + lengths + crcs)
    return head + struct.pack("<I", zlib.crc32(head)) + b"".join(chunks) + b"".join(s for _, s in side)


def side_entry(tag, stored, raw_len=None, compression=0, crc=None):
    raw_len = len(stored) if raw_len is None else raw_len
    crc = zlib.crc32(stored) if crc is None else crc
    return struct.pack("<4sBIII", tag, compression, len(stored), raw_len, crc), stored


# ---------------------------------------------------------------- round trips

def test_single_tile_round_trip():
    h = make_header()
    assert (h.latent_h, h.latent_w, h.n_tiles) == (30, 40, 1)
    assert h.tile_rect(0) == (0, 0, 30, 40)
    tiles = random_tiles(h, np.random.default_rng(0))
    f = L3icFile.parse(write(h, tiles))
    assert f.header == h and f.side_tags == () and f.side_data == {}
    got = f.tile_chunks(0)
    assert got.modes.dtype == np.uint8 and got.sizes.dtype == np.uint32
    assert np.array_equal(got.modes, tiles[0].modes) and np.array_equal(got.sizes, tiles[0].sizes)
    assert got.payload == tiles[0].payload


@pytest.mark.parametrize("width,height,stride,tile_h,tile_w", [
    (640, 480, 16, 7, 9),     # 30x40 latent: ragged bottom row and right column
    (1000, 17, 8, 1, 1),      # 3x125 latent, one cell per tile
    (33, 1000, 16, 63, 1),    # 63x3 latent, one tall column of tiles
    (16, 16, 8, 1, 2),        # 2x2 latent
])
def test_many_tiles_round_trip(width, height, stride, tile_h, tile_w):
    h = make_header(width=width, height=height, stride=stride, tile_h=tile_h, tile_w=tile_w, channels=3)
    tiles = random_tiles(h, np.random.default_rng(width))
    f = L3icFile.parse(write(h, tiles))
    assert f.header == h and h.tile_rows * h.tile_cols == h.n_tiles == len(tiles)
    cover = np.zeros((h.latent_h, h.latent_w), int)
    for t, tile in enumerate(tiles):
        y0, x0, th, tw = h.tile_rect(t)
        assert (th, tw) == (min(tile_h, h.latent_h - y0), min(tile_w, h.latent_w - x0))
        cover[y0:y0 + th, x0:x0 + tw] += 1
        got = f.tile_chunks(t)
        assert split(got) == split(tile) and np.array_equal(got.modes, tile.modes)
    assert (cover == 1).all()  # the tiles partition the latent
    with pytest.raises(IndexError):
        h.tile_rect(h.n_tiles)


def test_channel_subsets_in_any_order():
    h = make_header(channels=64, tile_h=16, tile_w=16)  # 2x3 tiles, ragged
    rng = np.random.default_rng(1)
    tiles = random_tiles(h, rng)
    f = L3icFile.parse(write(h, tiles))
    for _ in range(50):
        t = int(rng.integers(h.n_tiles))
        channels = rng.integers(0, 64, int(rng.integers(0, 20))).tolist()  # any order, repeats
        got = f.tile_chunks(t, channels)
        want = split(tiles[t])
        assert split(got) == [want[c] for c in channels]
        assert got.modes.tolist() == [int(tiles[t].modes[c]) for c in channels]
    assert f.tile_chunks(0, np.array([5, 3])).sizes.tolist() == tiles[0].sizes[[5, 3]].tolist()
    with pytest.raises(IndexError):
        f.tile_chunks(0, [64])
    with pytest.raises(IndexError):
        f.tile_chunks(h.n_tiles)


def test_side_data_with_and_without_zstd():
    h = make_header()
    tiles = random_tiles(h, np.random.default_rng(2))
    noise = np.random.default_rng(3).integers(0, 256, 3000).astype(np.uint8).tobytes()
    side = {"ICCP": b"profile " * 500, "EXIF": noise, "xTRA": b"", "ALPH": b"\x00" * 1000}
    data = write(h, tiles, side)
    f = L3icFile.parse(data)
    assert f.side_tags == tuple(side) and f.side_data == side
    # ICCP and ALPH compress, EXIF (noise) and the empty record are stored as they are.
    table = data[57 + len(h.model_name):57 + len(h.model_name) + 4 * 17]
    entries = {e[0]: e[1:] for e in struct.iter_unpack("<4sBIII", table)}
    assert [entries[t][0] for t in (b"ICCP", b"EXIF", b"xTRA", b"ALPH")] == [1, 0, 0, 1]
    assert entries[b"EXIF"][1:3] == (3000, 3000)


def test_parse_takes_any_buffer_without_copying():
    h = make_header(tile_h=7, tile_w=7)
    tiles = random_tiles(h, np.random.default_rng(4))
    data = write(h, tiles, {"EXIF": b"exif"})
    for buf in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        f, got, side = read_all(buf)
        assert [split(g) for g in got] == [split(t) for t in tiles] and side == {"EXIF": b"exif"}


def test_writer_rejects_bad_input():
    h = make_header(channels=2)
    good = TileChunks(np.array([0, 1], np.uint8), np.array([1, 1], np.uint32), b"ab")
    cases = [
        lambda: write(h, [good, good]),
        lambda: write(h, [TileChunks(np.array([0], np.uint8), np.array([2], np.uint32), b"ab")]),
        lambda: write(h, [TileChunks(np.array([0, 5], np.uint8), np.array([1, 1], np.uint32), b"ab")]),
        lambda: write(h, [good], {"EXIFF": b""}),
        lambda: write(h, [good], {"EX\nF": b""}),
        lambda: write(h, [good], {"%04d" % i: b"" for i in range(256)}),
        lambda: TileChunks(np.array([0, 1], np.uint8), np.array([1, 1], np.uint32), b"abc"),
        lambda: TileChunks(np.array([0, 1], np.uint8), np.array([2], np.uint32), b"ab"),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()


@pytest.mark.parametrize("overrides", [
    dict(width=0), dict(height=1 << 32), dict(mode="RGBA"), dict(model_name=""),
    dict(model_name="x" * 65), dict(model_name="a\nb"), dict(decoder_hash=bytes(15)),
    dict(codebook_size=1), dict(codebook_size=257), dict(codebook_min=32767 - 30),
    dict(codebook_min=-32769), dict(channels=0), dict(channels=1 << 16),
    dict(stride=256), dict(tile_h=0), dict(tile_w=41), dict(tile_h=31), dict(latent_h=31),
    dict(latent_w=39), dict(stride=0, latent_h=1, latent_w=1),
])
def test_header_rejects_invalid_values(overrides):
    with pytest.raises(ValueError):
        make_header(**overrides)


def test_header_extremes_are_valid():
    h = make_header(codebook_size=256, codebook_min=32767 - 255, channels=65535, stride=255,
                    model_name="é" * 32, width=1, height=1, tile_h=1, tile_w=1)
    assert (h.latent_h, h.latent_w, h.n_tiles) == (1, 1, 1)
    tile = TileChunks(np.ones(65535, np.uint8), np.ones(65535, np.uint32), bytes(65535))
    assert L3icFile.parse(write(h, [tile])).header == h


# ---------------------------------------------------------------- conformance

def test_spec_builder_matches_writer():
    h = Header(width=20, height=12, mode="RGB", model_name="tiny", decoder_hash=bytes(16), codebook_size=32,
               codebook_min=-15, channels=2, stride=8, latent_h=2, latent_w=3, tile_h=2, tile_w=2)
    chunks = [b"\x07", b"", b"x" * 200, b"\x01\x02"]
    tiles = [TileChunks(np.array([1, 3], np.uint8), np.array([1, 0], np.uint32), chunks[0] + chunks[1]),
             TileChunks(np.array([0, 2], np.uint8), np.array([200, 2], np.uint32), chunks[2] + chunks[3])]
    exif = bytes(range(20))  # incompressible: stored as it is
    side = [side_entry(b"EXIF", exif)]
    assert write(h, tiles, {"EXIF": exif}) == build(chunks=chunks, modes=b"\x01\x03\x00\x02", side=side)


def test_varint_lengths_at_every_width():
    h = make_header(channels=5)
    sizes = [0, 127, 128, 16383, 16384]
    payload = b"".join(bytes([i]) * s for i, s in enumerate(sizes))
    tile = TileChunks(np.zeros(5, np.uint8), np.array(sizes, np.uint32), payload)
    data = write(h, [tile])
    assert data[57 + 7 + 5:][:1 + 1 + 2 + 2 + 3] == b"".join(leb128(s) for s in sizes)
    assert split(L3icFile.parse(data).tile_chunks(0)) == split(tile)


def test_docs_example_is_what_the_writer_writes():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "FORMAT.md")).read()
    block = doc.split("<!-- example-hex")[1].split("```")[1]
    example = bytes.fromhex("".join(re.findall(r"^[0-9a-f]{4}: (.*)$", block, re.M)))

    def raw(symbols):  # RAW chunk, 5 bits per symbol, LSB first
        n = sum(s << (5 * i) for i, s in enumerate(symbols))
        return n.to_bytes((5 * len(symbols) + 7) // 8, "little")

    h = Header(width=20, height=12, mode="RGB", model_name="tiny", decoder_hash=hashlib.sha256(b"").digest()[:16], codebook_size=32,
               codebook_min=-15, channels=2, stride=8, latent_h=2, latent_w=3, tile_h=2, tile_w=2)
    context = bytes([15, 0, 2, 1, 3, 2, 1, 2]) + raw([15, 16, 14]) + b"\x0f"  # s0, predictor, k, threshold, ...
    tiles = [TileChunks(np.array([1, 4], np.uint8), np.array([1, len(context)], np.uint32), b"\x0f" + context),
             TileChunks(np.array([2, 1], np.uint8), np.array([2, 1], np.uint32), raw([17, 15]) + b"\x10")]
    exif = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    assert write(h, tiles, {"EXIF": exif}) == example
    f = L3icFile.parse(example)
    assert f.header == h and f.side_data == {"EXIF": exif}
    assert [h.tile_rect(t) for t in range(2)] == [(0, 0, 2, 2), (0, 2, 2, 1)]
    # the latent the example's table spells out, CONTEXT chunk included
    assert read_latents(example).tolist() == [[[0, 0, 2], [0, 0, 0]], [[0, 1, 1], [-1, 0, 1]]]


# ---------------------------------------------------------------- hostile input

def sample_file():
    """A small file with ragged tiles, empty chunks and both kinds of side record."""
    h = make_header(width=40, height=24, stride=8, channels=3, tile_h=2, tile_w=3)  # 3x5 latent, 2x2 tiles
    tiles = random_tiles(h, np.random.default_rng(5))
    return write(h, tiles, {"ICCP": b"icc " * 40, "EXIF": b"\x01\x02\x03"})


def assert_rejected(data, **limits):
    with pytest.raises(FormatError) as info:
        read_all(data, **limits)
    assert "\n" not in str(info.value) and "l3ic" in str(info.value)
    return str(info.value)


def test_sample_file_is_valid():
    f, tiles, side = read_all(sample_file())
    assert f.header.n_tiles == len(tiles) == 4 and len(side) == 2


def test_every_truncation_and_trailing_garbage():
    data = sample_file()
    for end in range(len(data)):
        assert_rejected(data[:end])
    assert "trailing garbage" in assert_rejected(data + b"\x00")


def test_every_byte_corrupted():
    """Flipping bits in any one byte is caught: by the header CRC, a chunk CRC or a side-data CRC."""
    data = sample_file()
    rng = np.random.default_rng(6)
    for pos in range(len(data)):
        for mask in (1 << int(rng.integers(8)), int(rng.integers(1, 256))):
            bad = bytearray(data)
            bad[pos] ^= mask
            assert_rejected(bytes(bad))


def test_random_corruption_and_random_streams():
    data = sample_file()
    rng = np.random.default_rng(7)
    for _ in range(1500):  # several bit flips at random places
        bad = bytearray(data)
        for pos in rng.integers(0, len(data), int(rng.integers(1, 6))).tolist():
            bad[pos] ^= 1 << int(rng.integers(8))
        assert_rejected(bytes(bad))
    prefixes = [b"", b"L3IC\x01", data[:57], data[:90]]
    for i in range(3000):  # noise, alone or behind a valid beginning
        noise = rng.integers(0, 256, int(rng.integers(0, 300))).astype(np.uint8).tobytes()
        assert_rejected(prefixes[i % 4] + noise)


def test_crafted_files_are_rejected_with_clear_messages():
    z = zstandard.ZstdCompressor().compress
    cases = {
        "bad magic": b"L3ID" + build()[4:],
        "version 7 (this runtime reads versions 1, 2, 3)": build(version=7),
        "version 0": build(version=0),
        "flags 0x0001": build(flags=1),
        "flags 0x8000": build(flags=0x8000),
        "zero channel": build(channels=0),
        "zero channel count, latent size or tile size": build(tile_w=0),
        "latent size 2x4 does not match": build(latent_w=4, chunks=[b"\x07"] * 4),
        "colour mode 2 is reserved": build(mode=2),
        "codebook size 1": build(codebook_size=1),
        "codebook size 257": build(codebook_size=257),
        "does not fit in int16": build(codebook_min=32767),
        "stride 0": build(stride=0),
        "tile size 3x2": build(tile_h=3, chunks=[b"\x07"] * 4),
        "model name must be 1..64": build(name=b""),
        "control characters": build(name=b"a\nb"),
        "utf-8": build(name=b"\xff\xfe"),
        "unknown coding mode 4 for format version 1": build(version=1, modes=b"\x01\x04\x01\x01"),
        "unknown coding mode 5 for format version 2": build(modes=b"\x01\x05\x01\x01"),
        "not minimal": build(lengths=b"\x81\x00\x01\x01\x01", chunks=[b"\x07"] * 4),
        "longer than 5 bytes": build(lengths=b"\x80" * 20),
        "2^32 bytes or more": build(lengths=b"\x80\x80\x80\x80\x10\x01\x01\x01"),
        "compression 2": build(side=[side_entry(b"EXIF", b"abc", compression=2)]),
        "3 bytes stored for 4": build(side=[side_entry(b"EXIF", b"abc", raw_len=4)]),
        "appears twice": build(side=[side_entry(b"EXIF", b"a"), side_entry(b"EXIF", b"b")]),
        "not printable": build(side=[side_entry(b"EX\x00F", b"a")]),
        "checksum mismatch in side data": build(side=[side_entry(b"EXIF", b"abc", crc=1)]),
        "checksum mismatch in tile 1 channel 0": build(crcs=struct.pack("<4I", 0, 0, 1, 0),
                                                      chunks=[b""] * 4, modes=bytes(4)),
        "does not decompress": build(side=[side_entry(b"ICCP", b"garbage!", 100, compression=1)]),
        "decompresses to more than 10": build(side=[side_entry(b"ICCP", z(bytes(1000)), 10, compression=1)]),
        "decompresses to 1000 bytes, expected 5000": build(
            side=[side_entry(b"ICCP", z(bytes(1000)), 5000, compression=1)]),
        "over the limit of 268435456": build(side=[side_entry(b"ICCP", z(bytes(10)), MAX_SIDE_DATA + 1,
                                                              compression=1)]),
        "header checksum mismatch": build()[:-8] + bytes([build()[-8] ^ 0xFF]) + build()[-7:],
    }
    for expected, data in cases.items():
        message = assert_rejected(data)
        assert expected.lower() in message.lower(), (expected, message)


def test_side_data_limit_is_a_parameter():
    data = build(side=[side_entry(b"EXIF", b"x" * 100)])
    assert "over the limit of 99" in assert_rejected(data, max_side_data=99)
    assert read_all(data, max_side_data=100)[2] == {"EXIF": b"x" * 100}


def test_huge_claims_fail_fast_without_allocating():
    big = (1 << 32) - 1
    lat = -(-big // 255)
    whole = dict(width=big, height=big, stride=255, latent_h=lat, latent_w=lat, tile_h=lat, tile_w=lat,
                 channels=1, chunks=[b"\x07"])
    cases = [
        ("over the limit of 2147483648 pixels", build(**whole), {}),
        ("over the limit of 1000 pixels", build(width=100, height=11, latent_h=2, latent_w=13,
                                                tile_w=13, chunks=[b"\x07"] * 2), dict(max_pixels=1000)),
        ("channel index (", build(**dict(whole, tile_h=1, tile_w=1)), {}),  # 2^48 tiles
        ("channel index (", build(**dict(whole, stride=1, latent_h=big, latent_w=big, tile_h=1,
                                         tile_w=1, channels=65535)), {}),  # 2^80 chunks
        ("channel index (", build(channels=65535), {}),
        ("payload and side data", build(lengths=leb128(big) + b"\x01\x01\x01"), {}),
        ("payload and side data", build(side=[(struct.pack("<4sBIII", b"EXIF", 1, big, 10, 0), b"")]), {}),
    ]
    tracemalloc.start()
    try:
        for expected, data, limits in cases:
            if hasattr(tracemalloc, "reset_peak"):  # Python >= 3.9
                tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            assert expected in assert_rejected(data, **limits)
            assert tracemalloc.get_traced_memory()[1] - start < 1 << 20, expected
    finally:
        tracemalloc.stop()
    # The pixel limit is only a default: a caller that expects huge images raises it.
    assert L3icFile.parse(build(**whole), max_pixels=1 << 64).header.width == big
