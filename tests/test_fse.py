"""Tests of the FSE channel coder (l3ic.fse and its C extension l3ic._fse)."""
import hashlib
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l3ic import fse
from l3ic.errors import FormatError, FSEError

HOSTILE_TRIALS = 3000


def bits_per_symbol(alphabet_size):
    return max(1, math.ceil(math.log2(alphabet_size)))


def pack_raw(symbols, alphabet_size):
    """RAW chunk as docs/FORMAT.md defines it: b-bit symbols, LSB first, zero padding."""
    b = bits_per_symbol(alphabet_size)
    value = 0
    for i, s in enumerate(int(v) for v in symbols):
        value |= s << (i * b)
    return value.to_bytes((len(symbols) * b + 7) // 8, "little")


def entropy_bytes(row):
    counts = np.bincount(row, minlength=256)
    p = counts[counts > 0] / row.size
    return float(-(p * np.log2(p)).sum()) * row.size / 8


def roundtrip(symbols, alphabet_size):
    """Encodes, checks the invariants of the result, decodes, compares; returns the encoding."""
    symbols = np.ascontiguousarray(symbols, np.uint8)
    n_channels, n = symbols.shape
    enc = fse.encode_channels(symbols, alphabet_size)
    assert enc.modes.dtype == np.uint8 and enc.modes.shape == (n_channels,)
    assert enc.sizes.dtype == np.uint32 and enc.sizes.shape == (n_channels,)
    assert isinstance(enc.payload, bytes) and len(enc.payload) == int(enc.sizes.sum())
    raw = fse.raw_size(n, alphabet_size)
    for c in range(n_channels):
        mode, size = int(enc.modes[c]), int(enc.sizes[c])
        if n == 0:
            assert (mode, size) == (fse.EMPTY, 0)
        elif np.all(symbols[c] == symbols[c, 0]):
            assert (mode, size) == (fse.CONSTANT, 1)
        elif mode == fse.RAW:
            assert size == raw
        else:
            assert mode == fse.FSE and size < raw   # FSE only when strictly smaller
    out = fse.decode_channels(enc.payload, enc.modes, enc.sizes, n, alphabet_size)
    assert out.dtype == np.uint8 and out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols)
    return enc


def laplacian(rng, shape, scale=2.0, alphabet_size=32):
    centre = alphabet_size // 2
    return np.clip(np.rint(rng.laplace(0, scale, shape)) + centre, 0, alphabet_size - 1).astype(np.uint8)


def chunks_of(enc):
    ends = np.cumsum(enc.sizes.astype(np.int64))
    return [enc.payload[e - s:e] for s, e in zip(enc.sizes.astype(np.int64), ends)]


# ---- lossless round trips -------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alphabet_size=st.integers(2, 256), n_channels=st.integers(0, 5), n=st.integers(0, 3000),
       kind=st.sampled_from(["uniform", "geometric", "few", "dominant", "constant"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_roundtrip_property(alphabet_size, n_channels, n, kind, seed):
    rng = np.random.default_rng(seed)
    shape = (n_channels, n)
    if kind == "uniform":
        x = rng.integers(0, alphabet_size, shape)
    elif kind == "geometric":
        x = np.minimum(rng.geometric(rng.uniform(0.05, 0.95), shape) - 1, alphabet_size - 1)
    elif kind == "few":
        x = rng.choice(rng.integers(0, alphabet_size, 3), shape)
    elif kind == "dominant":
        x = np.where(rng.random(shape) < 0.99, alphabet_size - 1, rng.integers(0, alphabet_size, shape))
    else:
        x = np.full(shape, rng.integers(0, alphabet_size))
    roundtrip(x, alphabet_size)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), alphabet_size=st.integers(2, 256))
def test_roundtrip_small_arbitrary(data, alphabet_size):
    rows = data.draw(st.integers(1, 3))
    n = data.draw(st.integers(0, 40))
    values = data.draw(st.lists(st.integers(0, alphabet_size - 1), min_size=rows * n, max_size=rows * n))
    roundtrip(np.array(values, np.uint8).reshape(rows, n), alphabet_size)


@pytest.mark.parametrize("alphabet_size", [2, 3, 5, 17, 32, 100, 129, 200, 255, 256])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 15, 16, 17, 100, 2047, 2048, 6144])
def test_roundtrip_sizes_and_alphabets(alphabet_size, n):
    rng = np.random.default_rng(n * 1000 + alphabet_size)
    rows = [rng.integers(0, alphabet_size, n), laplacian(rng, n, 1.0, alphabet_size),
            np.full(n, alphabet_size - 1), np.where(rng.random(n) < 0.99, 0, alphabet_size - 1)]
    roundtrip(np.stack(rows).astype(np.uint8), alphabet_size)


def test_empty_channels():
    enc = roundtrip(np.zeros((3, 0), np.uint8), 32)
    assert enc.payload == b"" and list(enc.modes) == [fse.EMPTY] * 3
    enc = roundtrip(np.zeros((0, 100), np.uint8), 32)
    assert enc.payload == b"" and enc.modes.size == 0
    out = fse.decode_channels(b"", [], [], 100, 32)
    assert out.shape == (0, 100)


def test_one_and_two_symbols():
    enc = roundtrip(np.array([[5]], np.uint8), 32)
    assert (enc.modes[0], enc.payload) == (fse.CONSTANT, b"\x05")
    enc = roundtrip(np.array([[3, 4], [9, 9]], np.uint8), 32)
    assert list(enc.modes) == [fse.RAW, fse.CONSTANT]
    assert enc.payload == pack_raw([3, 4], 32) + b"\x09"


def test_long_channels():
    rng = np.random.default_rng(1)
    x = laplacian(rng, (2, 1 << 20), 1.5)
    enc = roundtrip(x, 32)
    assert list(enc.modes) == [fse.FSE, fse.FSE]


def test_many_channels():
    rng = np.random.default_rng(2)
    x = laplacian(rng, (3000, 64), 0.7)
    x[::7] = 3
    roundtrip(x, 32)


def test_maximum_alphabet():
    rng = np.random.default_rng(3)
    x = np.stack([rng.integers(0, 256, 50000), np.arange(50000) % 256,
                  np.minimum(rng.geometric(0.02, 50000), 255)]).astype(np.uint8)
    enc = roundtrip(x, 256)
    assert enc.modes[0] == fse.RAW and enc.modes[2] == fse.FSE


def test_binary_alphabet():
    rng = np.random.default_rng(4)
    x = np.stack([rng.integers(0, 2, 9999), (rng.random(9999) < 0.05)]).astype(np.uint8)
    enc = roundtrip(x, 2)
    assert enc.modes[0] == fse.RAW and enc.sizes[0] == (9999 + 7) // 8
    assert enc.modes[1] == fse.FSE


def test_input_not_modified_and_deterministic():
    rng = np.random.default_rng(5)
    x = laplacian(rng, (4, 5000))
    copy = x.copy()
    a, b = fse.encode_channels(x, 32), fse.encode_channels(x, 32)
    np.testing.assert_array_equal(x, copy)
    assert a.payload == b.payload and (a.modes == b.modes).all() and (a.sizes == b.sizes).all()


def test_bitstream_is_stable():
    """The coded bytes are part of the file format: a change here breaks old files."""
    rng = np.random.default_rng(12345)
    x = np.stack([laplacian(rng, 4096, 1.2), rng.integers(0, 32, 4096), np.full(4096, 9),
                  np.where(rng.random(4096) < 0.9, 16, 17)]).astype(np.uint8)
    enc = fse.encode_channels(x, 32)
    assert list(enc.modes) == [fse.FSE, fse.RAW, fse.CONSTANT, fse.FSE]
    assert enc.sizes.tolist() == GOLDEN_SIZES
    assert hashlib.sha256(enc.payload).hexdigest() == GOLDEN_SHA256
    assert enc.payload[:len(GOLDEN_FSE_PREFIX)] == GOLDEN_FSE_PREFIX


GOLDEN_SIZES = [1398, 2560, 1, 247]
GOLDEN_SHA256 = "0ed716b16f85904232275a85dd308d5b29df50933287462ac28c8d703a390b22"
GOLDEN_FSE_PREFIX = bytes.fromhex("14e0032000000104 0f549c89c5b5caac 007cda44e10d0b1b")


def test_raw_layout_matches_the_format():
    rng = np.random.default_rng(6)
    for alphabet_size in (2, 3, 20, 32, 33, 200):
        x = rng.integers(0, alphabet_size, (1, 21)).astype(np.uint8)
        enc = fse.encode_channels(x, alphabet_size)
        if enc.modes[0] == fse.RAW:
            assert enc.payload == pack_raw(x[0], alphabet_size)
        raw = pack_raw(x[0], alphabet_size)
        out = fse.decode_channels(raw, [fse.RAW], [len(raw)], 21, alphabet_size)
        np.testing.assert_array_equal(out, x)


# ---- random access ----------------------------------------------------------------------

def test_decode_any_subset_of_channels():
    rng = np.random.default_rng(7)
    x = laplacian(rng, (12, 3000), 1.0)
    x[3] = 0
    x[5] = rng.integers(0, 32, 3000)
    enc = roundtrip(x, 32)
    chunks = chunks_of(enc)
    for wanted in ([0], [11], [3, 5], [10, 2, 7], list(range(12))[::-1], [4, 4]):
        payload = b"".join(chunks[c] for c in wanted)
        out = fse.decode_channels(payload, enc.modes[wanted], enc.sizes[wanted], 3000, 32)
        np.testing.assert_array_equal(out, x[wanted])
    out = fse.decode_channels(memoryview(enc.payload)[:int(enc.sizes[0])], enc.modes[:1], enc.sizes[:1], 3000, 32)
    np.testing.assert_array_equal(out, x[:1])


# ---- mode choice and compression --------------------------------------------------------

def test_mode_selection():
    rng = np.random.default_rng(8)
    n = 200
    uniform = rng.integers(0, 32, (50, n)).astype(np.uint8)
    enc = roundtrip(uniform, 32)
    assert (enc.sizes <= fse.raw_size(n, 32)).all()
    assert set(enc.modes.tolist()) <= {fse.RAW, fse.FSE}
    enc = roundtrip(np.full((2, 10000), 31, np.uint8), 32)
    assert list(enc.modes) == [fse.CONSTANT] * 2 and enc.payload == b"\x1f\x1f"
    tiny = np.array([[0, 200, 0, 0, 0]], np.uint8)   # FSE's table alone exceeds RAW's 5 bytes
    enc = roundtrip(tiny, 256)
    assert enc.modes[0] == fse.RAW and enc.sizes[0] == 5


@pytest.mark.parametrize("make", [
    lambda rng, n: laplacian(rng, n, 1.0),
    lambda rng, n: np.minimum(rng.geometric(0.3, n) - 1, 31),
    lambda rng, n: np.where(rng.random(n) < 0.99, 7, rng.integers(0, 32, n)),
])
def test_compression_close_to_entropy(make):
    rng = np.random.default_rng(9)
    row = make(rng, 100000).astype(np.uint8)
    enc = roundtrip(row[None], 32)
    assert enc.modes[0] == fse.FSE
    assert len(enc.payload) <= entropy_bytes(row) * 1.02 + 64


# ---- argument checking -------------------------------------------------------------------

def test_encode_rejects_bad_arguments():
    x = np.zeros((2, 10), np.uint8)
    with pytest.raises(ValueError, match="alphabet"):
        fse.encode_channels(x, 1)
    with pytest.raises(ValueError, match="alphabet"):
        fse.encode_channels(x, 257)
    with pytest.raises(ValueError, match="uint8"):
        fse.encode_channels(x.astype(np.int16), 32)
    with pytest.raises(ValueError, match="uint8"):
        fse.encode_channels(x.tolist(), 32)
    with pytest.raises(ValueError, match="2-D"):
        fse.encode_channels(x[0], 32)
    with pytest.raises(ValueError, match="contiguous"):
        fse.encode_channels(np.zeros((10, 2), np.uint8).T, 32)
    with pytest.raises(TypeError):
        fse.encode_channels(x, 32.0)


@pytest.mark.parametrize("alphabet_size,bad", [(32, 32), (32, 255), (2, 2), (200, 200), (100, 255)])
def test_encode_rejects_symbols_outside_the_alphabet(alphabet_size, bad):
    for n in (1, 2, 3, 5000):
        x = np.zeros((3, n), np.uint8)
        x[1, n // 2] = bad
        with pytest.raises(ValueError, match="alphabet"):
            fse.encode_channels(x, alphabet_size)


def test_decode_rejects_bad_arguments():
    enc = fse.encode_channels(np.zeros((2, 10), np.uint8), 32)
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, enc.modes, enc.sizes, 10, 300)
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, enc.modes, enc.sizes, -1, 32)
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, enc.modes, enc.sizes, 2 ** 40, 32)
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, enc.modes, enc.sizes[:1], 10, 32)
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, [[1, 1]], [[1, 1]], 10, 32)
    with pytest.raises(ValueError):
        fse.decode_channels("text", enc.modes, enc.sizes, 10, 32)
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, enc.modes, [-1, 3], 10, 32)


def test_fse_error_carries_the_code():
    with pytest.raises(FSEError) as info:
        fse.decode_channels(b"\x05\x06", [fse.CONSTANT, 9], [1, 1], 10, 32)
    assert isinstance(info.value, FormatError)
    assert info.value.code == fse.lib.L3IC_FSE_ERR_BAD_MODE and "chunk 1 of 2" in str(info.value)
    with pytest.raises(FSEError) as info:
        fse.decode_channels(b"\x05", [fse.CONSTANT], [2], 10, 32)
    assert info.value.code == fse.lib.L3IC_FSE_ERR_SIZE_MISMATCH


def test_decode_rejects_invalid_chunks():
    def fails(payload, modes, sizes, n, alphabet_size, code):
        with pytest.raises(FSEError) as info:
            fse.decode_channels(payload, modes, sizes, n, alphabet_size)
        assert info.value.code == code, str(info.value)

    lib = fse.lib
    fails(b"\x20", [fse.CONSTANT], [1], 5, 32, lib.L3IC_FSE_ERR_SYMBOL_RANGE)
    fails(b"\x05", [fse.CONSTANT], [1], 0, 32, lib.L3IC_FSE_ERR_BAD_MODE)
    fails(b"", [fse.EMPTY], [0], 5, 32, lib.L3IC_FSE_ERR_BAD_MODE)
    fails(b"\x00", [fse.EMPTY], [1], 0, 32, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(b"\x00" * 5, [fse.RAW], [5], 9, 32, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(pack_raw([19, 20], 20), [fse.RAW], [2], 2, 20, lib.L3IC_FSE_ERR_SYMBOL_RANGE)
    fails(bytes([0x1F | 0x80]), [fse.RAW], [1], 1, 32, lib.L3IC_FSE_ERR_CORRUPT)   # padding bit set
    fails(bytes([200]), [fse.RAW], [1], 1, 150, lib.L3IC_FSE_ERR_SYMBOL_RANGE)
    fails(b"\x01\x02", [fse.FSE], [2], 1, 32, lib.L3IC_FSE_ERR_BAD_MODE)
    fails(b"\x01", [fse.FSE], [1], 10, 32, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(b"\x00\x00", [fse.CONSTANT, fse.CONSTANT], [1, 2], 3, 32, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(b"\x00\x00\x00", [fse.CONSTANT, fse.CONSTANT], [1, 1], 3, 32, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(b"\x00", [fse.CONSTANT] * 2, [1, 0xFFFFFFFF], 3, 32, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    # an FSE table whose largest symbol is beyond the alphabet
    rng = np.random.default_rng(10)
    row = np.minimum(rng.geometric(0.1, (1, 5000)), 150).astype(np.uint8)
    row[0, ::50] = 150
    enc = fse.encode_channels(row, 256)
    assert enc.modes[0] == fse.FSE
    fails(enc.payload, enc.modes, enc.sizes, 5000, 100, lib.L3IC_FSE_ERR_SYMBOL_RANGE)
    # the right chunk with the wrong number of symbols
    fails(enc.payload, enc.modes, enc.sizes, 4999, 256, lib.L3IC_FSE_ERR_CORRUPT)
    fails(enc.payload, enc.modes, enc.sizes, 5001, 256, lib.L3IC_FSE_ERR_CORRUPT)
    fails(enc.payload[:-1], enc.modes, enc.sizes - 1, 5000, 256, lib.L3IC_FSE_ERR_CORRUPT)


# ---- hostile input ------------------------------------------------------------------------

def _hostile_corpus():
    rng = np.random.default_rng(11)
    cases = []
    for alphabet_size, n in ((32, 6144), (32, 40), (2, 500), (256, 3000), (20, 17), (32, 3)):
        x = np.stack([laplacian(rng, n, 1.0, alphabet_size), rng.integers(0, alphabet_size, n),
                      np.full(n, alphabet_size - 1), np.where(rng.random(n) < 0.97, 1, 0)]).astype(np.uint8)
        cases.append((fse.encode_channels(x, alphabet_size), n, alphabet_size))
    return cases


def _mutate(rng, enc, n, alphabet_size):
    payload = bytearray(enc.payload)
    modes, sizes = enc.modes.astype(np.int64), enc.sizes.astype(np.int64)
    kind = int(rng.integers(0, 9))
    if kind == 0 and payload:   # flip bits
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(payload)))
            payload[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1 and payload:   # truncate the payload, keeping or fixing the sizes
        cut = int(rng.integers(1, len(payload) + 1))
        del payload[-cut:]
        if rng.random() < 0.5:
            last = len(sizes) - 1
            sizes[last] = max(0, sizes[last] - cut)
    elif kind == 2:   # random bytes
        payload = bytearray(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes())
        k = int(rng.integers(1, 5))
        modes = rng.integers(0, 5, k)
        sizes = rng.multinomial(len(payload), np.ones(k) / k) if rng.random() < 0.8 else rng.integers(0, 300, k)
    elif kind == 3:   # random modes
        modes = rng.integers(0, 256 if rng.random() < 0.2 else 4, modes.size)
    elif kind == 4:   # random sizes, often adding up past the payload
        sizes = rng.integers(0, 2 ** 32, sizes.size) if rng.random() < 0.3 else sizes + rng.integers(-3, 4, sizes.size)
        sizes = np.abs(sizes)
    elif kind == 5:   # a huge or wrong symbol count with a tiny payload
        n = int(rng.choice([0, 1, 2, n - 1, n + 1, 2 * n, 10 ** 6, 2 ** 31, 2 ** 40]))
        if n >= 2 ** 20:
            keep = rng.integers(0, len(sizes))
            modes, sizes = modes[keep:keep + 1], sizes[keep:keep + 1]
            payload = payload[:int(sizes[0])] if modes[0] != fse.CONSTANT else payload[:1]
            if modes[0] == fse.CONSTANT:   # a constant chunk of any length is valid: make it not so
                modes[0] = fse.FSE
    elif kind == 6:   # wrong alphabet
        alphabet_size = int(rng.choice([0, 1, 2, 3, alphabet_size - 1, alphabet_size + 1, 255, 256, 257]))
    elif kind == 7 and payload:   # overwrite a random span inside one chunk
        i = int(rng.integers(0, len(payload)))
        span = rng.integers(0, 256, min(int(rng.integers(1, 9)), len(payload) - i), dtype=np.uint8)
        payload[i:i + span.size] = span.tobytes()
    else:   # shuffle the chunk descriptions
        order = rng.permutation(modes.size)
        modes = modes[order] if rng.random() < 0.5 else modes
        sizes = sizes[order]
    return bytes(payload), modes, sizes, n, alphabet_size


def test_hostile_input_never_crashes():
    rng = np.random.default_rng(2024)
    corpus = _hostile_corpus()
    outcomes = {"ok": 0, "FSEError": 0, "ValueError": 0}
    for _ in range(HOSTILE_TRIALS):
        enc, n, alphabet_size = corpus[int(rng.integers(0, len(corpus)))]
        payload, modes, sizes, n, alphabet_size = _mutate(rng, enc, n, alphabet_size)
        try:
            out = fse.decode_channels(payload, modes, sizes, n, alphabet_size)
        except FSEError:
            outcomes["FSEError"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
        else:   # some mutations are valid codings (a flipped bit in a RAW chunk)
            outcomes["ok"] += 1
            assert out.shape == (len(modes), n) and out.dtype == np.uint8
            assert out.size == 0 or int(out.max()) < alphabet_size
    assert outcomes["FSEError"] > HOSTILE_TRIALS // 2 and outcomes["ValueError"] > 0, outcomes


def test_truncated_and_flipped_fse_chunks_fail():
    rng = np.random.default_rng(13)
    row = laplacian(rng, (1, 6144), 1.0)
    enc = fse.encode_channels(row, 32)
    chunk = enc.payload
    assert enc.modes[0] == fse.FSE
    failures = 0
    for cut in range(1, len(chunk) - 1):
        with pytest.raises(FSEError):
            fse.decode_channels(chunk[:cut], [fse.FSE], [cut], 6144, 32)
    for i in range(0, len(chunk), 7):
        for bit in range(8):
            damaged = bytearray(chunk)
            damaged[i] ^= 1 << bit
            try:
                out = fse.decode_channels(bytes(damaged), [fse.FSE], [len(chunk)], 6144, 32)
            except FSEError:
                failures += 1
            else:
                assert out.shape == (1, 6144) and int(out.max()) < 32
    assert failures > 0


# ---- threads -----------------------------------------------------------------------------

def test_threads_give_the_same_results():
    rng = np.random.default_rng(14)
    inputs = [laplacian(rng, (8, 20000), s) for s in (0.5, 1.0, 2.0, 4.0)]
    expected = [fse.encode_channels(x, 32) for x in inputs]
    results = [None] * len(inputs)

    def work(i):
        enc = fse.encode_channels(inputs[i], 32)
        out = fse.decode_channels(enc.payload, enc.modes, enc.sizes, 20000, 32)
        results[i] = (enc.payload, bool((out == inputs[i]).all()))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(e.payload, True) for e in expected]


# ---- the CONTEXT mode (format version 2) -------------------------------------------------

def clustered(rng, channels, h, w, alphabet_size=32, busy=0.3):
    """Latent-like rasters: the zero symbol, with blobs of Laplacian values (what makes CONTEXT pay)."""
    centre = alphabet_size // 2
    blobs = rng.random((channels, h // 4 + 1, w // 4 + 1)) < busy
    mask = np.repeat(np.repeat(blobs, 4, axis=1), 4, axis=2)[:, :h, :w]
    values = np.clip(np.rint(rng.laplace(0, 3, (channels, h, w))) + centre, 0, alphabet_size - 1)
    return np.where(mask, values, centre).astype(np.uint8).reshape(channels, h * w)


def smooth(rng, channels, h, w, alphabet_size=32):
    """Dense, slowly varying rasters (like the few busiest latent channels): where prediction pays."""
    y, x = np.mgrid[0:h, 0:w]
    waves = [np.sin(x / rng.uniform(3, 9) + rng.uniform(0, 6)) + np.cos(y / rng.uniform(3, 9)) for _ in range(channels)]
    values = np.stack(waves) * alphabet_size / 5 + alphabet_size / 2 + rng.normal(0, 0.6, (channels, h, w))
    return np.clip(np.rint(values), 0, alphabet_size - 1).astype(np.uint8).reshape(channels, h * w)


def reference_decode_context(chunk, n, width, alphabet_size):
    """docs/FORMAT.md's CONTEXT chunk, decoded independently of the C code (which only decodes the
    sub-chunks, modes 0..3).  Returns (symbols, (s0, predictor, thresholds))."""
    def varint(pos):
        value, shift = 0, 0
        while True:
            byte = chunk[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                return value, pos
    s0, predictor, k = chunk[0], chunk[1], chunk[2]
    thresholds, pos = list(chunk[3:3 + k - 1]), 3 + k - 1
    counts = []
    for _ in range(k - 1):
        count, pos = varint(pos)
        counts.append(count)
    counts.append(n - sum(counts))
    modes, pos = list(chunk[pos:pos + k]), pos + k
    lengths = []
    for _ in range(k - 1):
        length, pos = varint(pos)
        lengths.append(length)
    lengths.append(len(chunk) - pos - sum(lengths))
    streams = []
    for mode, length, count in zip(modes, lengths, counts):
        streams.append(list(fse.decode_channels(chunk[pos:pos + length], [mode], [length], count, alphabet_size)[0]))
        pos += length
    half = alphabet_size // 2
    centre = half if predictor else s0
    x = np.zeros(n, np.int64)
    t = np.zeros(n, np.int64)
    for i in range(n):
        row, col = divmod(i, width)
        left = x[i - 1] if col else s0
        up = x[i - width] if row else s0
        up_left = x[i - width - 1] if row and col else s0
        near = [t[i - 1] if col else centre, t[i - width - 1] if row and col else centre,
                t[i - width] if row else centre, t[i - width + 1] if row and col + 1 < width else centre]
        activity = sum(abs(int(v) - centre) for v in near)
        t[i] = streams[sum(activity > th for th in thresholds)].pop(0)
        if predictor == 0:
            x[i] = t[i]
            continue
        if predictor == 1:
            p = left
        elif predictor == 2:
            p = up
        elif up_left >= max(left, up):
            p = min(left, up)
        elif up_left <= min(left, up):
            p = max(left, up)
        else:
            p = left + up - up_left
        x[i] = (t[i] + p - half) % alphabet_size
    assert not any(streams)
    return x.astype(np.uint8), (s0, predictor, thresholds)


@pytest.mark.parametrize("make, predicted", [(clustered, False), (smooth, True)])
def test_context_mode_wins_and_follows_the_spec(make, predicted):
    rng = np.random.default_rng(20)
    h, w = 48, 64
    x = make(rng, 6, h, w)
    plain = fse.encode_channels(x, 32)
    enc = fse.encode_channels(x, 32, width=w)
    np.testing.assert_array_equal(fse.decode_channels(enc.payload, enc.modes, enc.sizes, h * w, 32, width=w), x)
    assert (enc.modes == fse.CONTEXT).all()
    assert len(enc.payload) < 0.9 * len(plain.payload)
    assert (enc.sizes <= plain.sizes).all()   # never longer than the best plain mode
    for c, chunk in enumerate(chunks_of(enc)):
        symbols, (s0, predictor, thresholds) = reference_decode_context(chunk, h * w, w, 32)
        np.testing.assert_array_equal(symbols, x[c])
        assert s0 == np.bincount(x[c]).argmax() and (predictor != 0) == predicted
        assert set(thresholds) <= {0, 1, 2, 3, 4, 6, 8, 12, 16}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alphabet_size=st.integers(2, 256), h=st.integers(1, 70), w=st.integers(1, 70),
       busy=st.floats(0, 1), seed=st.integers(0, 2 ** 32 - 1))
def test_context_roundtrip_property(alphabet_size, h, w, busy, seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([clustered(rng, 2, h, w, alphabet_size, busy), smooth(rng, 2, h, w, alphabet_size)])
    enc = fse.encode_channels(x, alphabet_size, width=w)
    assert (enc.sizes <= fse.encode_channels(x, alphabet_size).sizes).all()
    np.testing.assert_array_equal(fse.decode_channels(enc.payload, enc.modes, enc.sizes, h * w, alphabet_size,
                                                      width=w), x)


def test_context_bitstream_is_stable():
    """CONTEXT chunks are part of format version 2: a change here breaks files."""
    rng = np.random.default_rng(21)
    x = np.concatenate([clustered(rng, 2, 40, 50), smooth(rng, 1, 40, 50)])   # with and without prediction
    enc = fse.encode_channels(x, 32, width=50)
    assert list(enc.modes) == [fse.CONTEXT] * 3
    assert enc.sizes.tolist() == GOLDEN_CONTEXT_SIZES
    assert hashlib.sha256(enc.payload).hexdigest() == GOLDEN_CONTEXT_SHA256


GOLDEN_CONTEXT_SIZES = [443, 472, 608]
GOLDEN_CONTEXT_SHA256 = "b77272a1685ee1e16b1426d5b2c2aa0291db8df7d8998d8c3ef55f6d25d25b4b"


def test_context_chunks_need_a_width():
    x = clustered(np.random.default_rng(22), 1, 30, 30)
    enc = fse.encode_channels(x, 32, width=30)
    assert enc.modes[0] == fse.CONTEXT
    with pytest.raises(FSEError) as info:   # width 0: a version-1 stream, where mode 4 does not exist
        fse.decode_channels(enc.payload, enc.modes, enc.sizes, 900, 32)
    assert info.value.code == fse.lib.L3IC_FSE_ERR_BAD_MODE
    with pytest.raises(ValueError):
        fse.encode_channels(x, 32, width=7)   # 900 symbols are not rows of 7
    with pytest.raises(ValueError):
        fse.decode_channels(enc.payload, enc.modes, enc.sizes, 900, 32, width=-1)


def test_decode_rejects_invalid_context_chunks():
    lib = fse.lib
    w = 3   # a 2 x 3 raster

    def fails(chunk, code, n=6, width=w):
        with pytest.raises(FSEError) as info:
            fse.decode_channels(chunk, [fse.CONTEXT], [len(chunk)], n, 32, width=width)
        assert info.value.code == code, str(info.value)

    def decodes(chunk):
        return fse.decode_channels(chunk, [fse.CONTEXT], [len(chunk)], 6, 32, width=w)[0].tolist()

    # s0 = 5, no prediction, 2 streams at threshold 0: every neighbour of the first five positions
    # is 5 (or outside), so they are in stream 0; the sixth follows a 9 (stream 1)
    raw5 = pack_raw([5, 5, 5, 5, 9], 32)   # 4 bytes
    head = bytes([5, 0, 2, 0, 5, fse.RAW, fse.CONSTANT, 4])   # s0, predictor, k, threshold, count, modes, length
    assert decodes(head + raw5 + b"\x07") == [5, 5, 5, 5, 9, 7]
    # one stream with the left predictor: residuals centred on 16
    assert decodes(bytes([5, 1, 1, fse.RAW]) + pack_raw([16, 16, 16, 16, 20, 14], 32)) == [5, 5, 5, 5, 9, 7]

    def with_byte(i, value):
        return head[:i] + bytes([value]) + head[i + 1:] + raw5 + b"\x07"
    fails(with_byte(0, 32), lib.L3IC_FSE_ERR_SYMBOL_RANGE)   # s0 outside the alphabet
    fails(with_byte(1, 4), lib.L3IC_FSE_ERR_CORRUPT)   # no predictor 4
    fails(with_byte(4, 7), lib.L3IC_FSE_ERR_CORRUPT)   # a count above n
    fails(with_byte(7, 9), lib.L3IC_FSE_ERR_CORRUPT)   # a length past the chunk
    fails(with_byte(5, fse.CONTEXT), lib.L3IC_FSE_ERR_BAD_MODE)   # CONTEXT does not nest
    fails(with_byte(7, 3), lib.L3IC_FSE_ERR_SIZE_MISMATCH)   # RAW of 3 bytes for 5 symbols
    fails(bytes([5, 0, 0, fse.RAW]) + pack_raw([5] * 6, 32), lib.L3IC_FSE_ERR_CORRUPT)   # k = 0
    fails(bytes([5, 0, 4, 0, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 5, 5, 5]), lib.L3IC_FSE_ERR_CORRUPT)   # k = 4
    fails(bytes([5, 0, 3, 2, 2, 4, 1, fse.RAW, fse.CONSTANT, fse.CONSTANT, 4, 1]) + raw5 + b"\x07\x07",
          lib.L3IC_FSE_ERR_CORRUPT)   # thresholds not increasing
    fails(head[:4] + bytes([0x85, 0x00]) + head[5:] + raw5 + b"\x07", lib.L3IC_FSE_ERR_CORRUPT)   # non-minimal varint
    # three streams whose first length claims the bytes of the second length and beyond
    fails(bytes([5, 0, 3, 0, 1, 2, 2, fse.FSE, fse.CONSTANT, fse.FSE, 4, 1]) + bytes(3), lib.L3IC_FSE_ERR_CORRUPT)
    fails(bytes([5, 0, 2]), lib.L3IC_FSE_ERR_SIZE_MISMATCH)   # under 4 bytes
    fails(bytes([5, 0, 2, 0]), lib.L3IC_FSE_ERR_CORRUPT)   # cut inside the header
    fails(bytes([5, 0, 2, 0, 5, fse.EMPTY, fse.CONSTANT, 0, 7]), lib.L3IC_FSE_ERR_BAD_MODE)   # EMPTY for 5 symbols
    # streams that run out: all six in stream 0, but the sixth has activity 4; two in stream 0, the third has 0
    fails(bytes([5, 0, 2, 0, 6, fse.RAW, fse.EMPTY, 4]) + pack_raw([5, 5, 5, 5, 9, 7], 32), lib.L3IC_FSE_ERR_CORRUPT)
    fails(bytes([5, 0, 2, 0, 2, fse.RAW, fse.RAW, 2]) + pack_raw([5, 5], 32) + pack_raw([5, 5, 9, 7], 32),
          lib.L3IC_FSE_ERR_CORRUPT)
    fails(bytes([5, 0, 1, fse.CONSTANT, 5]), lib.L3IC_FSE_ERR_BAD_MODE, n=1, width=1)   # CONTEXT needs n >= 2


def test_hostile_context_chunks_never_crash():
    rng = np.random.default_rng(23)
    corpus = []
    for alphabet_size, h, w in ((32, 64, 96), (32, 16, 24), (4, 64, 64), (256, 40, 60)):
        x = clustered(rng, 3, h, w, alphabet_size)
        corpus.append((fse.encode_channels(x, alphabet_size, width=w), h, w, alphabet_size))
    assert all((enc.modes == fse.CONTEXT).any() for enc, *_ in corpus)
    outcomes = {"ok": 0, "FSEError": 0}
    for _ in range(HOSTILE_TRIALS):
        enc, h, w, alphabet_size = corpus[int(rng.integers(0, len(corpus)))]
        c = int(rng.integers(0, enc.modes.size))
        chunk, n = bytearray(chunks_of(enc)[c]), h * w
        kind = int(rng.integers(0, 4))
        if kind == 0:   # flip bits, mostly in the chunk header
            for _ in range(int(rng.integers(1, 4))):
                i = int(rng.integers(0, min(len(chunk), 14) if rng.random() < 0.7 else len(chunk)))
                chunk[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:   # truncate
            del chunk[int(rng.integers(0, len(chunk))):]
        elif kind == 2:   # another s0, predictor, stream count or threshold
            chunk[int(rng.integers(0, 4))] = int(rng.integers(0, 256))
        else:   # another width with the same symbol count
            w = int(rng.choice([d for d in range(1, n + 1) if n % d == 0]))
        try:
            out = fse.decode_channels(bytes(chunk), enc.modes[c:c + 1], [len(chunk)], n, alphabet_size, width=w)
        except FSEError:
            outcomes["FSEError"] += 1
        else:
            outcomes["ok"] += 1
            assert int(out.max()) < alphabet_size
    assert outcomes["FSEError"] > HOSTILE_TRIALS // 2, outcomes


# ---- the STATIC mode (format version 3): static multi-table tANS -----------------------

def discretised_counts(scales, alphabet_size=32, table_log=12, kind="laplace"):
    """One row of normalized counts per scale: a discretised Laplace or Gaussian centred on the
    alphabet, every count >= 1, each row summing to exactly 1 << table_log."""
    total = 1 << table_log
    x = np.arange(alphabet_size) - alphabet_size // 2
    rows = []
    for scale in scales:
        p = np.exp(-np.abs(x) / scale) if kind == "laplace" else np.exp(-0.5 * (x / scale) ** 2)
        p = p / p.sum()
        counts = np.maximum(1, np.floor(p * (total - alphabet_size)).astype(np.int64) + 1)
        counts[np.argmax(counts)] += total - counts.sum()   # the largest absorbs the rounding
        assert counts.min() >= 1 and counts.sum() == total
        rows.append(counts)
    return np.stack(rows)


def draw_from_tables(rng, counts, table_index):
    """Symbols distributed as their tables say: symbol [c, i] from row table_index[c, i]."""
    cdf = np.cumsum(counts, axis=1) / counts.sum(axis=1, keepdims=True)
    u = rng.random(table_index.shape)
    return (u[..., None] >= cdf[table_index]).sum(-1).clip(0, counts.shape[1] - 1).astype(np.uint8)


def static_roundtrip(tables, symbols, table_index):
    """Encodes, checks the invariants and the mode choice, decodes, compares; returns the encoding."""
    n_channels, n = symbols.shape
    enc = tables.encode(symbols, table_index)
    assert enc.modes.dtype == np.uint8 and enc.sizes.dtype == np.uint32 and enc.modes.shape == (n_channels,)
    assert len(enc.payload) == int(enc.sizes.sum())
    raw = fse.raw_size(n, tables.alphabet_size) if n else 0
    for c in range(n_channels):
        mode, size = int(enc.modes[c]), int(enc.sizes[c])
        if n == 0:
            assert (mode, size) == (fse.EMPTY, 0)
        elif np.all(symbols[c] == symbols[c, 0]):
            assert (mode, size) == (fse.CONSTANT, 1)
        elif mode == fse.RAW:
            assert size == raw
        else:
            assert mode == fse.STATIC and 1 <= size < raw   # STATIC only when strictly smaller
    out = tables.decode(enc.payload, enc.modes, enc.sizes, table_index)
    assert out.dtype == np.uint8 and out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols)
    return enc


def ideal_bytes(counts, symbols, table_index, table_log):
    return float(-np.log2(counts[table_index, symbols] / (1 << table_log)).sum()) / 8


@pytest.mark.parametrize("table_log, n_tables, kind", [(12, 64, "laplace"), (12, 7, "gauss"), (5, 4, "laplace"),
                                                       (6, 16, "gauss"), (9, 1, "laplace")])
def test_static_roundtrip(table_log, n_tables, kind):
    rng = np.random.default_rng(30 + table_log * 100 + n_tables)
    counts = discretised_counts(np.geomspace(0.3, 12, n_tables), 32, table_log, kind)
    tables = fse.StaticTables(counts, table_log)
    assert (tables.n_tables, tables.alphabet_size, tables.table_log) == (n_tables, 32, table_log)
    for n in (1, 2, 3, 7, 8, 9, 64, 1000, 4099):
        index = rng.integers(0, n_tables, (6, n)).astype(np.uint8)
        index[1] = index[1, 0]   # one table for the whole channel
        symbols = draw_from_tables(rng, counts, index)
        symbols[2] = 16   # constant
        symbols[3] = rng.integers(0, 32, n)   # uniform: RAW unless n is tiny
        enc = static_roundtrip(tables, symbols, index)
        if n >= 1000:   # (with table_log 5, 32 symbols all have count 1: uniform tables, so RAW)
            assert enc.modes[0] == (fse.STATIC if table_log > 5 else fse.RAW) and enc.modes[2] == fse.CONSTANT
        # any subset of the channels, in any order, with their index rows
        chunks = chunks_of(enc)
        for wanted in ([0], [5, 1], [4, 4, 0], [3, 2, 1, 0]):
            payload = b"".join(chunks[c] for c in wanted)
            out = tables.decode(payload, enc.modes[wanted], enc.sizes[wanted], np.ascontiguousarray(index[wanted]))
            np.testing.assert_array_equal(out, symbols[wanted])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_log=st.integers(5, 12), alphabet_size=st.sampled_from([2, 3, 17, 32]), n_tables=st.integers(1, 64),
       n_channels=st.integers(0, 4), n=st.integers(0, 3000), seed=st.integers(0, 2 ** 32 - 1))
def test_static_roundtrip_property(table_log, alphabet_size, n_tables, n_channels, n, seed):
    rng = np.random.default_rng(seed)
    total = 1 << table_log
    if alphabet_size > total:
        return
    # random tables: every count >= 1, the rest spread by a random (often peaked) distribution
    p = rng.dirichlet(np.full(alphabet_size, rng.uniform(0.05, 3)), n_tables)
    counts = 1 + np.floor(p * (total - alphabet_size)).astype(np.int64)
    counts[np.arange(n_tables), counts.argmax(1)] += total - counts.sum(1)
    tables = fse.StaticTables(counts, table_log)
    index = rng.integers(0, n_tables, (n_channels, n)).astype(np.uint8)
    symbols = draw_from_tables(rng, counts, index)
    static_roundtrip(tables, symbols, index)


def test_static_size_close_to_ideal():
    rng = np.random.default_rng(31)
    # tANS's excess over the ideal code length, per symbol, shrinks with the number of states:
    # ~0.02 % at table_log 12 for 32 symbols, ~0.4 % at table_log 5..6 (measured: 0.0187 %, 0.38 %)
    for table_log, n_tables, alphabet_size, excess in ((12, 64, 32, 0.0005), (8, 20, 32, 0.003),
                                                       (6, 3, 32, 0.006), (5, 3, 8, 0.006)):
        counts = discretised_counts(np.geomspace(0.4, 8, n_tables), alphabet_size, table_log)
        tables = fse.StaticTables(counts, table_log)
        for n in (1, 50, 500, 5000, 50000):
            index = rng.integers(0, n_tables, (2, n)).astype(np.uint8)
            symbols = draw_from_tables(rng, counts, index)
            symbols[1, 0] = (symbols[1, -1] + 1) % alphabet_size   # not constant
            enc = tables.encode(symbols[1:], index[1:])
            assert enc.modes[0] == fse.STATIC or n < 10
            # the chunk itself, whichever mode wins: the final state (table_log bits) and the
            # end mark take under (table_log + 1) / 8 + 1 bytes beyond the symbols' bits
            chunk = reference_static_encode(counts, table_log, symbols[1], index[1])
            if enc.modes[0] == fse.STATIC:
                assert enc.payload == chunk
            ideal = ideal_bytes(counts, symbols[1:], index[1:], table_log)
            assert ideal - 2 <= len(chunk) <= ideal * (1 + excess) + (table_log + 1) / 8 + 1, (n, len(chunk), ideal)


def test_static_mode_choice():
    counts = discretised_counts([0.5, 1.0], 32, 12)
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(32)
    n = 3000
    index = rng.integers(0, 2, (3, n)).astype(np.uint8)
    symbols = np.stack([np.full(n, 16), rng.integers(0, 32, n), np.full(n, 3)]).astype(np.uint8)
    enc = static_roundtrip(tables, symbols, index)
    # constant channels take one byte, even when improbable; uniform symbols under a peaked table: RAW
    assert list(enc.modes) == [fse.CONSTANT, fse.RAW, fse.CONSTANT]
    assert enc.payload[0] == 16 and enc.payload[-1] == 3
    assert enc.payload[1:-1] == pack_raw(symbols[1], 32)
    # a channel of a single symbol; two symbols (RAW: 2 bytes at 5 bits each, STATIC needs >= 2)
    enc = static_roundtrip(tables, np.array([[7]], np.uint8), np.zeros((1, 1), np.uint8))
    assert (enc.modes[0], enc.payload) == (fse.CONSTANT, b"\x07")
    empty = static_roundtrip(tables, np.zeros((2, 0), np.uint8), np.zeros((2, 0), np.uint8))
    assert empty.payload == b"" and list(empty.modes) == [fse.EMPTY] * 2
    assert tables.decode(b"", [], [], np.zeros((0, 5), np.uint8)).shape == (0, 5)


def test_static_chunk_follows_the_layout():
    """A reference tANS encoder (independent of the C code, from zstd's table construction) gives the
    same bytes: the STATIC chunk layout documented in l3ic_fse.h."""
    table_log = 6
    counts = np.array([[40, 10, 7, 4, 3], [1, 1, 2, 20, 40], [12, 13, 13, 13, 13]])  # alphabet 5
    tables = fse.StaticTables(counts, table_log)
    rng = np.random.default_rng(33)
    index = rng.integers(0, 3, (1, 400)).astype(np.uint8)
    symbols = draw_from_tables(rng, counts, index)
    enc = tables.encode(symbols, index)
    assert enc.modes[0] == fse.STATIC
    assert enc.payload == reference_static_encode(counts, table_log, symbols[0], index[0])


def reference_static_encode(counts, table_log, symbols, index):
    size = 1 << table_log
    step = (size >> 1) + (size >> 3) + 3   # FSE_TABLESTEP
    encode_tables = []
    for row in counts:
        spread, pos = [0] * size, 0   # zstd's symbol spread
        for s, c in enumerate(row):
            for _ in range(int(c)):
                spread[pos] = s
                pos = (pos + step) & (size - 1)
        # encoder: the states of symbol s in spread order are its count .. 2 count - 1
        state_of = {}
        next_state = [int(c) for c in row]
        for u, s in enumerate(spread):
            state_of[(s, next_state[s])] = size + u
            next_state[s] += 1
        encode_tables.append(state_of)
    bits, nbits = 0, 0

    def put(value, n):
        nonlocal bits, nbits
        bits |= (value & ((1 << n) - 1)) << nbits
        nbits += n

    state = size   # decoder state 0
    for s, k in zip(symbols[::-1], index[::-1]):
        c = int(counts[k][s])
        n_out = 0
        while (state >> n_out) >= 2 * c:
            n_out += 1
        put(state, n_out)
        state = encode_tables[k][(int(s), state >> n_out)]
    put(state, table_log)
    put(1, 1)   # the end mark
    return bits.to_bytes((nbits + 7) // 8, "little")


def test_static_deterministic_and_input_untouched():
    counts = discretised_counts(np.geomspace(0.3, 10, 40), 32, 12)
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(34)
    index = rng.integers(0, 40, (5, 4000)).astype(np.uint8)
    symbols = draw_from_tables(rng, counts, index)
    copies = symbols.copy(), index.copy()
    a = tables.encode(symbols, index)
    b = fse.StaticTables(counts.copy(), 12).encode(symbols, index)
    assert a.payload == b.payload and (a.modes == b.modes).all() and (a.sizes == b.sizes).all()
    np.testing.assert_array_equal(symbols, copies[0])
    np.testing.assert_array_equal(index, copies[1])


def test_static_bitstream_is_stable():
    """STATIC chunks are part of format version 3: a change here breaks files."""
    counts = discretised_counts(np.geomspace(0.3, 10, 16), 32, 12)
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(35)
    index = rng.integers(0, 16, (3, 2048)).astype(np.uint8)
    symbols = draw_from_tables(rng, counts, index)
    enc = tables.encode(symbols, index)
    assert list(enc.modes) == [fse.STATIC] * 3
    assert enc.sizes.tolist() == GOLDEN_STATIC_SIZES
    assert hashlib.sha256(enc.payload).hexdigest() == GOLDEN_STATIC_SHA256


GOLDEN_STATIC_SIZES = [762, 769, 778]
GOLDEN_STATIC_SHA256 = "6776c2bb670e48112a66ed8bf6de2cb9adef4b061610cfa9267568ad0a4007e3"


def test_static_tables_reject_bad_counts():
    good = discretised_counts([1.0, 2.0], 32, 12)
    fse.StaticTables(good, 12)
    bad_sum = good.copy()
    bad_sum[1, 3] += 1
    zero = good.copy()
    zero[0, 0], zero[0, 16] = 0, zero[0, 16] + zero[0, 0]
    negative = good.copy()
    negative[0, 0], negative[0, 16] = -1, zero[0, 16] + good[0, 0] + 1
    for counts, table_log in ((bad_sum, 12), (zero, 12), (negative, 12), (good, 11), (good, 13), (good, 4),
                              (good, -1), (good, 100), (np.full((1, 32), 1), 5 - 1), (np.full((1, 64), 1), 5),
                              (np.full((1, 2), 70000), 17)):
        with pytest.raises(ValueError):
            fse.StaticTables(counts, table_log)
    fse.StaticTables(np.full((1, 32), 1), 5)   # 32 ones fill a table of 32
    fse.StaticTables(np.full((256, 256), 16), 12)   # the largest
    with pytest.raises(ValueError, match="table_log"):
        fse.StaticTables(zero, 12)
    for counts in (np.zeros((0, 32), np.int64), np.full((257, 32), 128), np.full((1, 1), 4096),
                   np.full((1, 257), 16), good[0], good.astype(float), good.tolist() and "text"):
        with pytest.raises(ValueError):
            fse.StaticTables(counts, 12)
    with pytest.raises(TypeError):
        fse.StaticTables(good, 12.0)


def test_static_rejects_bad_arguments():
    counts = discretised_counts([1.0, 2.0, 4.0], 32, 12)
    tables = fse.StaticTables(counts, 12)
    x = np.zeros((2, 10), np.uint8)
    idx = np.zeros((2, 10), np.uint8)
    enc = tables.encode(x, idx)
    for symbols, index in ((x, idx[:1]), (x, idx[:, :9]), (x, idx.astype(np.int16)), (x, idx.tolist()),
                           (x, idx[0]), (x, np.zeros((10, 2), np.uint8).T), (x.astype(np.int16), idx),
                           (x[0], idx[0]), (np.zeros((10, 2), np.uint8).T, idx)):
        with pytest.raises(ValueError):
            tables.encode(symbols, index)
    bad = idx.copy()
    bad[1, 5] = 3
    with pytest.raises(ValueError, match="n_tables"):
        tables.encode(x, bad)
    big = x.copy()
    big[0, 9] = 32
    with pytest.raises(ValueError, match="alphabet"):
        tables.encode(big, idx)
    with pytest.raises(ValueError, match="n_tables"):
        tables.decode(enc.payload, enc.modes, enc.sizes, bad)
    for index in (idx[:1], np.zeros((3, 10), np.uint8), idx.astype(np.int64), idx.tolist(), idx[0],
                  np.zeros((10, 2), np.uint8).T):
        with pytest.raises(ValueError):
            tables.decode(enc.payload, enc.modes, enc.sizes, index)
    with pytest.raises(ValueError):
        tables.decode("text", enc.modes, enc.sizes, idx)
    with pytest.raises(ValueError):
        tables.decode(enc.payload, enc.modes, enc.sizes[:1], idx)


def test_static_decode_rejects_invalid_chunks():
    lib = fse.lib
    counts = discretised_counts([1.0, 3.0], 32, 12)
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(36)
    index = rng.integers(0, 2, (1, 500)).astype(np.uint8)
    symbols = draw_from_tables(rng, counts, index)
    enc = tables.encode(symbols, index)
    assert enc.modes[0] == fse.STATIC
    chunk = enc.payload

    def fails(payload, modes, sizes, index, code):
        with pytest.raises(FSEError) as info:
            tables.decode(payload, modes, sizes, index)
        assert info.value.code == code, str(info.value)

    one = np.zeros((1, 5), np.uint8)
    fails(b"\x05" * 2, [fse.FSE], [2], one, lib.L3IC_FSE_ERR_BAD_MODE)
    fails(b"\x05" * 4, [fse.CONTEXT], [4], one, lib.L3IC_FSE_ERR_BAD_MODE)
    fails(b"\x05", [6], [1], one, lib.L3IC_FSE_ERR_BAD_MODE)
    fails(b"\x05", [fse.STATIC], [1], np.zeros((1, 0), np.uint8), lib.L3IC_FSE_ERR_BAD_MODE)   # n == 0
    fails(b"", [fse.STATIC], [0], one, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(b"\x05", [fse.CONSTANT, fse.STATIC], [1, 0], np.zeros((2, 5), np.uint8), lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(chunk, [fse.STATIC], [len(chunk) + 1], index, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(chunk + b"\x00", [fse.STATIC], [len(chunk)], index, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(b"\x20", [fse.CONSTANT], [1], one, lib.L3IC_FSE_ERR_SYMBOL_RANGE)
    fails(b"\x00" * 3, [fse.RAW], [3], one, lib.L3IC_FSE_ERR_SIZE_MISMATCH)
    fails(chunk[:-1] + b"\x00", [fse.STATIC], [len(chunk)], index, lib.L3IC_FSE_ERR_CORRUPT)   # no end mark
    # the right chunk with too few / too many symbols, or other tables
    fails(chunk, [fse.STATIC], [len(chunk)], np.ascontiguousarray(index[:, :-1]), lib.L3IC_FSE_ERR_CORRUPT)
    fails(chunk, [fse.STATIC], [len(chunk)], np.concatenate([index, index], 1), lib.L3IC_FSE_ERR_CORRUPT)
    fails(chunk, [fse.STATIC], [len(chunk)], 1 - index, lib.L3IC_FSE_ERR_CORRUPT)
    # the whole layout is checked before decoding: a bad second chunk fails before the corrupt first
    with pytest.raises(FSEError) as info:
        tables.decode(b"\x00\x05", [fse.STATIC, fse.FSE], [1, 1], np.zeros((2, 5), np.uint8))
    assert info.value.code == lib.L3IC_FSE_ERR_BAD_MODE and "chunk 1 of 2" in str(info.value)
    # mode 5 does not exist without tables
    for width in (0, 5):
        with pytest.raises(FSEError) as info:
            fse.decode_channels(chunk, [fse.STATIC], [len(chunk)], 500, 32, width=width)
        assert info.value.code == lib.L3IC_FSE_ERR_BAD_MODE


def test_static_hostile_chunks_never_crash():
    rng = np.random.default_rng(37)
    corpus = []
    for table_log, n_tables, alphabet_size, n in ((12, 64, 32, 3000), (5, 3, 8, 200), (7, 5, 2, 400),
                                                  (12, 8, 32, 20), (9, 2, 32, 12)):
        counts = discretised_counts(np.geomspace(0.3, 6, n_tables), alphabet_size, table_log)
        tables = fse.StaticTables(counts, table_log)
        index = rng.integers(0, n_tables, (3, n)).astype(np.uint8)
        symbols = draw_from_tables(rng, counts, index)
        enc = tables.encode(symbols, index)
        corpus.append((tables, enc, index))
    assert all((enc.modes == fse.STATIC).any() for _, enc, _ in corpus)
    outcomes = {"ok": 0, "FSEError": 0}
    for trial in range(HOSTILE_TRIALS):
        tables, enc, index = corpus[int(rng.integers(0, len(corpus)))]
        c = int(rng.integers(0, enc.modes.size))
        chunk, rows = bytearray(chunks_of(enc)[c]), index[c:c + 1]
        kind = int(rng.integers(0, 6))
        if kind == 0:   # flip bits
            for _ in range(int(rng.integers(1, 4))):
                i = int(rng.integers(0, len(chunk)))
                chunk[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1 and len(chunk) > 1:   # truncate, at either end
            cut = int(rng.integers(1, len(chunk)))
            chunk = chunk[cut:] if rng.random() < 0.5 else chunk[:-cut]
        elif kind == 2:   # random bytes, often 1..8 of them (BIT_initDStream's short path)
            length = int(rng.integers(1, 9)) if rng.random() < 0.6 else int(rng.integers(1, 2000))
            chunk = bytearray(rng.integers(0, 256, length, dtype=np.uint8).tobytes())
        elif kind == 3:   # other table indices or another symbol count
            n = max(1, rows.shape[1] + int(rng.integers(-3, 4))) if rng.random() < 0.5 else rows.shape[1]
            rows = rng.integers(0, tables.n_tables, (1, n)).astype(np.uint8)
        elif kind == 4:   # extra bytes
            chunk += rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:   # overwrite a span
            i = int(rng.integers(0, len(chunk)))
            span = rng.integers(0, 256, min(int(rng.integers(1, 9)), len(chunk) - i), dtype=np.uint8)
            chunk[i:i + span.size] = span.tobytes()
        try:
            out = tables.decode(bytes(chunk), [fse.STATIC], [len(chunk)], rows)
        except FSEError as error:
            outcomes["FSEError"] += 1
            assert error.code in (fse.lib.L3IC_FSE_ERR_CORRUPT,), str(error)
        else:
            outcomes["ok"] += 1
            assert out.shape == rows.shape and int(out.max()) < tables.alphabet_size
    assert outcomes["FSEError"] > HOSTILE_TRIALS // 2, outcomes


def test_static_truncated_and_flipped_chunks_fail():
    counts = discretised_counts(np.geomspace(0.5, 4, 8), 32, 12)
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(38)
    index = rng.integers(0, 8, (1, 3000)).astype(np.uint8)
    symbols = draw_from_tables(rng, counts, index)
    enc = tables.encode(symbols, index)
    chunk = enc.payload
    assert enc.modes[0] == fse.STATIC
    for cut in range(1, len(chunk)):
        for damaged in (chunk[:cut], chunk[cut:]):
            with pytest.raises(FSEError):
                tables.decode(damaged, [fse.STATIC], [len(damaged)], index)
    failures = 0
    for i in range(0, len(chunk), 5):
        for bit in range(8):
            damaged = bytearray(chunk)
            damaged[i] ^= 1 << bit
            try:
                out = tables.decode(bytes(damaged), [fse.STATIC], [len(chunk)], index)
            except FSEError:
                failures += 1
            else:
                assert out.shape == (1, 3000) and int(out.max()) < 32
    assert failures > 0


def test_static_threads_give_the_same_results():
    counts = discretised_counts(np.geomspace(0.3, 10, 32), 32, 12)
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(39)
    indices = [rng.integers(0, 32, (8, 20000)).astype(np.uint8) for _ in range(4)]
    inputs = [draw_from_tables(rng, counts, index) for index in indices]
    expected = [tables.encode(x, index) for x, index in zip(inputs, indices)]
    results = [None] * len(inputs)

    def work(i):
        enc = tables.encode(inputs[i], indices[i])
        out = tables.decode(enc.payload, enc.modes, enc.sizes, indices[i])
        results[i] = (enc.payload, bool((out == inputs[i]).all()))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(e.payload, True) for e in expected]


def test_static_short_chunks_never_crash():
    """Chunks of 1..8 bytes take BIT_initDStream's short path: every 1-byte chunk, many 2..8-byte ones."""
    rng = np.random.default_rng(40)
    for table_log, alphabet_size in ((5, 8), (12, 32), (7, 2)):
        counts = discretised_counts(np.geomspace(0.3, 3, 3), alphabet_size, table_log)
        tables = fse.StaticTables(counts, table_log)
        chunks = [bytes([b]) for b in range(256)]
        chunks += [rng.integers(0, 256, int(rng.integers(2, 9)), dtype=np.uint8).tobytes() for _ in range(1500)]
        decoded = 0
        for chunk in chunks:
            n = int(rng.integers(1, 12))
            index = rng.integers(0, 3, (1, n)).astype(np.uint8)
            try:
                out = tables.decode(chunk, [fse.STATIC], [len(chunk)], index)
            except FSEError as error:
                assert error.code == fse.lib.L3IC_FSE_ERR_CORRUPT
            else:
                decoded += 1
                assert out.shape == (1, n) and int(out.max()) < alphabet_size
                # the checks at the end (exact end, state 0) leave one valid chunk per symbol string
                assert chunk == reference_static_encode(counts, table_log, out[0], index[0])
        assert decoded < len(chunks) // 2


def test_static_tables_of_the_largest_alphabet_and_table_log():
    """Alphabet 256 at tableLog 12 is where zstd's workspace-size macro rounds down (an overflow found by fuzzing
    under ASan): the tables build and round-trip."""
    counts = np.full((1, 256), 16, np.int16)
    counts[0, -1], counts[0, -2] = 1, 31
    tables = fse.StaticTables(counts, 12)
    rng = np.random.default_rng(7)
    symbols = rng.integers(0, 256, (2, 5000)).astype(np.uint8)
    index = np.zeros_like(symbols)
    coded = tables.encode(symbols, index)
    np.testing.assert_array_equal(tables.decode(coded.payload, coded.modes, coded.sizes, index), symbols)
