"""FSE entropy coding of latent channels: the Python face of the ``l3ic._fse`` extension.

Why this layer exists: every latent channel of an l3ic image is coded on its own (with Yann
Collet's FSE, compiled from zstd's sources by build_fse.py), so that a reader can decode any
subset of channels without touching the others.  All the work happens in C (csrc/fse): the
per-channel choice of coding mode, and every check on hostile input.  This module validates
the Python-side arguments, passes numpy buffers to C without copying (``ffi.from_buffer``),
and turns C error codes into exceptions: ``ValueError`` for a caller's mistake,
``l3ic.errors.FSEError`` (a ``FormatError``) for bytes that are not a valid coding.
cffi releases the GIL during each call, so threads can code tiles in parallel.

Coding modes (stored in the file, see docs/FORMAT.md): ``FSE`` (0), ``CONSTANT`` (1: one
byte, the repeated symbol), ``RAW`` (2: symbols bit-packed at ceil(log2 L) bits), ``EMPTY``
(3: no symbols) and, from format version 2, ``CONTEXT`` (4: the channel seen as a raster of
rows of ``width`` symbols, optionally predicted from its neighbours, and split into up to
three FSE-coded streams by how busy each symbol's neighbourhood is; latents cluster, so
the streams have different statistics and together cost ~10 % fewer bits on Kodak).  The
encoder picks, per channel, the mode with the shortest chunk.

From format version 3 (the hyperprior entropy model), ``StaticTables`` codes channels with
tables fixed by the model instead: ``STATIC`` (5) is one tANS (FSE) bitstream in which symbol
``i`` is coded with table ``table_index[i]``, one of the model's K tables (all of one
tableLog), which the decoder derives from side information before decoding; the chunk
carries no table.  Its encoder chooses per channel between ``EMPTY``, ``CONSTANT``,
``STATIC`` and ``RAW``; csrc/fse/l3ic_fse.h defines the chunk exactly.

Works with Python >= 3.8 and numpy >= 1.19.
"""
import operator
import os
from typing import NamedTuple

import numpy as np

try:
    from l3ic import _fse
    from l3ic._fse import ffi, lib
except ImportError as e:  # a source folder on sys.path ahead of the installed package, or a broken build
    raise ImportError("l3ic's compiled FSE extension is missing in %s (%s): install l3ic with pip install . "
                      "(pip install -e . in a checkout)" % (os.path.dirname(os.path.abspath(__file__)), e)) from e
from l3ic.errors import FSEError

__all__ = ["FSE", "CONSTANT", "RAW", "EMPTY", "CONTEXT", "STATIC", "MODE_NAMES", "MAX_SYMBOLS", "EncodedChannels",
           "encode_channels", "decode_channels", "raw_size", "StaticTables"]

FSE = int(lib.L3IC_FSE_MODE_FSE)
CONSTANT = int(lib.L3IC_FSE_MODE_CONSTANT)
RAW = int(lib.L3IC_FSE_MODE_RAW)
EMPTY = int(lib.L3IC_FSE_MODE_EMPTY)
CONTEXT = int(lib.L3IC_FSE_MODE_CONTEXT)
STATIC = int(lib.L3IC_FSE_MODE_STATIC)
EXTENSION_FILE = _fse.__file__  # the compiled coder (benchmarks.rd keys its cache on it: a new coder, new sizes)
MODE_NAMES = {FSE: "FSE", CONSTANT: "CONSTANT", RAW: "RAW", EMPTY: "EMPTY", CONTEXT: "CONTEXT", STATIC: "STATIC"}
MAX_SYMBOLS = int(lib.L3IC_FSE_MAX_SYMBOLS)   # per channel
MAX_ALPHABET = int(lib.L3IC_FSE_MAX_ALPHABET)
MAX_TABLES = int(lib.L3IC_FSE_MAX_TABLES)
_U32_MAX = 0xFFFFFFFF


class EncodedChannels(NamedTuple):
    """Coded channels: chunk ``c`` has mode ``modes[c]`` and is ``sizes[c]`` bytes of
    ``payload``, the chunks following each other in channel order."""
    modes: np.ndarray     # uint8 (C,)
    sizes: np.ndarray     # uint32 (C,)
    payload: bytes


def as_context(coded, rows):
    """``coded`` with the chunks ``rows`` (of modes 0..3) re-expressed as one-stream CONTEXT chunks, 4 bytes longer.

    A one-stream CONTEXT chunk (s0 0, no predictor, k 1, the mode) wraps the
    chunk unchanged and decodes to the same symbols; format 3 needs it where a
    chunk must code plain latent values (read as such only in FSE or CONTEXT
    mode) and the coder chose CONSTANT or RAW.  Valid for chunks of 2 or more
    symbols (CONTEXT's rule).
    """
    ends = np.cumsum(coded.sizes, dtype=np.int64)
    chunks = [coded.payload[e - n:e] for e, n in zip(ends.tolist(), coded.sizes.tolist())]
    modes, sizes = coded.modes.copy(), coded.sizes.copy()
    for i in rows:
        if modes[i] > EMPTY:
            raise ValueError("only chunks of modes 0..3 can be wrapped, chunk %d has mode %d" % (i, modes[i]))
        chunks[i] = bytes([0, 0, 1, int(modes[i])]) + chunks[i]
        modes[i], sizes[i] = CONTEXT, sizes[i] + 4
    return EncodedChannels(modes, sizes, b"".join(chunks))


def _message(code):
    return ffi.string(lib.l3ic_fse_error_message(code)).decode("ascii")


def _check_alphabet(alphabet_size):
    alphabet_size = operator.index(alphabet_size)
    if not 2 <= alphabet_size <= MAX_ALPHABET:
        raise ValueError("alphabet_size must be 2..%d, got %d" % (MAX_ALPHABET, alphabet_size))
    return alphabet_size


def _check_n_symbols(n_symbols):
    n_symbols = operator.index(n_symbols)
    if not 0 <= n_symbols <= MAX_SYMBOLS:
        raise ValueError("n_symbols must be 0..%d per channel, got %d" % (MAX_SYMBOLS, n_symbols))
    return n_symbols


def raw_size(n_symbols, alphabet_size):
    """Byte length of a RAW chunk: ceil(n_symbols * ceil(log2(alphabet_size)) / 8)."""
    return int(lib.l3ic_fse_raw_size(_check_n_symbols(n_symbols), _check_alphabet(alphabet_size)))


def _check_width(width, n_symbols):
    width = operator.index(width)
    if width < 0 or (width and n_symbols % width):
        raise ValueError("width must be 0 or divide n_symbols %d, got %d" % (n_symbols, width))
    return width


def encode_channels(symbols, alphabet_size, width=0):
    """Code each row of ``symbols`` (uint8 ndarray, C-contiguous, shape (C, N), every value
    < ``alphabet_size``, 2 <= ``alphabet_size`` <= 256) on its own.

    ``width``: each row is a raster of N / ``width`` rows of ``width`` symbols (a latent
    tile), which lets the encoder use the CONTEXT mode; 0 (version-1 streams) never does.

    Returns ``EncodedChannels(modes, sizes, payload)``.  Raises ``ValueError`` for bad
    arguments, including a symbol >= ``alphabet_size``.
    """
    alphabet_size = _check_alphabet(alphabet_size)
    if not isinstance(symbols, np.ndarray) or symbols.dtype != np.uint8 or symbols.ndim != 2:
        raise ValueError("symbols must be a 2-D uint8 numpy array (channels, symbols), got %s"
                         % (_describe(symbols),))
    if not symbols.flags.c_contiguous:
        raise ValueError("symbols must be C-contiguous (use np.ascontiguousarray)")
    n_channels, n_symbols = symbols.shape
    _check_n_symbols(n_symbols)
    width = _check_width(width, n_symbols)
    bound = int(lib.l3ic_fse_encode_bound(n_channels, n_symbols, alphabet_size))
    dst = np.empty(max(bound, 1), np.uint8)
    modes = np.empty(n_channels, np.uint8)
    sizes = np.empty(n_channels, np.uint32)
    written = ffi.new("size_t*")
    code = lib.l3ic_fse_encode_channels(
        ffi.from_buffer("uint8_t[]", symbols), n_channels, n_symbols, width, alphabet_size,
        ffi.from_buffer("uint8_t[]", dst, require_writable=True), bound,
        ffi.from_buffer("uint8_t[]", modes, require_writable=True),
        ffi.from_buffer("uint32_t[]", sizes, require_writable=True), written)
    if code == lib.L3IC_FSE_ERR_SYMBOL_RANGE:
        raise ValueError("symbols must be < alphabet_size %d; the largest is %d"
                         % (alphabet_size, int(symbols.max())))
    if code == lib.L3IC_FSE_ERR_ALLOC:
        raise MemoryError("FSE encoder: " + _message(code))
    if code != lib.L3IC_FSE_OK:   # arguments were checked above: this is a bug
        raise RuntimeError("FSE encoder failed: %s (code %d)" % (_message(code), code))
    return EncodedChannels(modes, sizes, dst[:written[0]].tobytes())


def decode_channels(payload, modes, sizes, n_symbols, alphabet_size, width=0):
    """Decode chunks laid back to back in ``payload`` (any bytes-like object): chunk ``c``
    has mode ``modes[c]`` and length ``sizes[c]``, and holds ``n_symbols`` symbols of an
    alphabet of ``alphabet_size``, in rows of ``width`` (as given to ``encode_channels``;
    0 rejects CONTEXT chunks).  The chunks may be any subset of a file's channels.

    Returns a uint8 array of shape (len(modes), n_symbols).  Raises ``FSEError`` if the
    chunks are not a valid coding (every byte is treated as hostile: nothing is allocated
    before the layout is checked, and decoding cannot overrun or hang), ``ValueError``
    for malformed arguments (wrong types or shapes, n_symbols or alphabet_size out of range).
    """
    alphabet_size = _check_alphabet(alphabet_size)
    n_symbols = _check_n_symbols(n_symbols)
    width = _check_width(width, n_symbols)
    src, modes, sizes = _chunk_arguments(payload, modes, sizes)
    n_channels = modes.size
    c_modes = ffi.from_buffer("uint8_t[]", modes)
    c_sizes = ffi.from_buffer("uint32_t[]", sizes)
    where = ffi.new("size_t*", n_channels)
    _raise_for(lib.l3ic_fse_check_layout(len(src), c_modes, c_sizes, n_channels, n_symbols, width,
                                         alphabet_size, where), where[0], n_channels)
    out = np.empty((n_channels, n_symbols), np.uint8)
    _raise_for(lib.l3ic_fse_decode_channels(src, len(src), c_modes, c_sizes, n_channels, n_symbols,
                                            width, alphabet_size, ffi.from_buffer("uint8_t[]", out,
                                                                           require_writable=True),
                                            where), where[0], n_channels)
    return out


def _chunk_arguments(payload, modes, sizes):
    """(C view of ``payload``, modes as uint8, sizes as uint32), checked: ValueError for malformed
    arguments, FSEError for a mode or size no chunk can have."""
    modes = _index_array(modes, "modes")
    sizes = _index_array(sizes, "sizes")
    if modes.shape != sizes.shape:
        raise ValueError("modes and sizes must have the same length, got %d and %d"
                         % (modes.size, sizes.size))
    bad = np.flatnonzero(modes > 255)
    if bad.size:
        raise FSEError("corrupt FSE data: %s (chunk %d: mode %d)"
                       % (_message(lib.L3IC_FSE_ERR_BAD_MODE), bad[0], modes[bad[0]]),
                       int(lib.L3IC_FSE_ERR_BAD_MODE))
    bad = np.flatnonzero(sizes > _U32_MAX)
    if bad.size:
        raise FSEError("corrupt FSE data: %s (chunk %d: %d bytes)"
                       % (_message(lib.L3IC_FSE_ERR_SIZE_MISMATCH), bad[0], sizes[bad[0]]),
                       int(lib.L3IC_FSE_ERR_SIZE_MISMATCH))
    modes = np.ascontiguousarray(modes, np.uint8)
    sizes = np.ascontiguousarray(sizes, np.uint32)
    try:
        src = ffi.from_buffer("uint8_t[]", payload)
    except TypeError:
        raise ValueError("payload must be a bytes-like object, got %s" % type(payload).__name__) from None
    return src, modes, sizes


def _raise_for(code, channel, n_channels):
    if code == lib.L3IC_FSE_OK:
        return
    if code == lib.L3IC_FSE_ERR_ALLOC:
        raise MemoryError("FSE decoder: " + _message(code))
    if code == lib.L3IC_FSE_ERR_ARG:   # arguments were checked above: this is a bug
        raise RuntimeError("FSE decoder: " + _message(code))
    where = " (chunk %d of %d)" % (channel, n_channels) if channel < n_channels else ""
    raise FSEError("corrupt FSE data: %s%s" % (_message(code), where), int(code))


def _index_array(values, name):
    """``values`` as a 1-D integer array (int64, or unsigned as given); ValueError otherwise."""
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError("%s must be a 1-D sequence of integers, got %s" % (name, _describe(values)))
    if array.dtype.kind == "u":
        return array
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError("%s must not be negative" % name)
    return array


def _describe(value):
    if isinstance(value, np.ndarray):
        return "%s array of shape %s" % (value.dtype, value.shape)
    return type(value).__name__


class StaticTables:
    """K static FSE tables sharing one tableLog (from a model's entropy model); creating them
    validates the counts.

    ``counts``: integer array of shape (K, L), 1 <= K <= 256, 2 <= L <= 256: row k holds the
    normalized counts of table k over an alphabet of L symbols, every count >= 1 (every symbol
    must stay codable), each row summing to exactly ``1 << table_log``, 5 <= ``table_log`` <= 12.
    Raises ``ValueError`` otherwise.  The tables are read-only once built: any number of
    threads may code with one ``StaticTables`` at once (the GIL is released during coding).
    """

    def __init__(self, counts, table_log):
        table_log = operator.index(table_log)
        counts = np.asarray(counts)
        if counts.ndim != 2 or (counts.size and counts.dtype.kind not in "iu"):
            raise ValueError("counts must be a 2-D integer array (tables, alphabet), got %s" % _describe(counts))
        n_tables, alphabet_size = counts.shape
        if not 1 <= n_tables <= MAX_TABLES:
            raise ValueError("counts must have 1..%d rows (tables), got %d" % (MAX_TABLES, n_tables))
        _check_alphabet(alphabet_size)
        if counts.min() < 1 or counts.max() >= 1 << 15 or not 0 <= table_log < 16:
            # outside int16 (or an absurd table_log): let C give its message for bad tables
            code = lib.L3IC_FSE_ERR_BAD_TABLE
        else:
            counts = np.ascontiguousarray(counts, np.int16)
            out = ffi.new("l3ic_fse_tables**")
            code = lib.l3ic_fse_tables_create(ffi.from_buffer("int16_t[]", counts), n_tables, alphabet_size,
                                              table_log, out)
        if code == lib.L3IC_FSE_ERR_ALLOC:
            raise MemoryError("FSE tables: " + _message(code))
        if code != lib.L3IC_FSE_OK:
            raise ValueError("%s (%d tables of %d symbols, table_log %d)"
                             % (_message(code), n_tables, alphabet_size, table_log))
        self._tables = ffi.gc(out[0], lib.l3ic_fse_tables_free)
        self.n_tables = n_tables
        self.alphabet_size = alphabet_size
        self.table_log = table_log

    def __repr__(self):
        return "StaticTables(n_tables=%d, alphabet_size=%d, table_log=%d)" % (
            self.n_tables, self.alphabet_size, self.table_log)

    def _check_index(self, table_index, n_channels, n_symbols=None):
        """ValueError unless table_index is a C-contiguous uint8 array of shape (n_channels, n_symbols)
        (any n_symbols if None)."""
        if not isinstance(table_index, np.ndarray) or table_index.dtype != np.uint8 or table_index.ndim != 2:
            raise ValueError("table_index must be a 2-D uint8 numpy array (channels, symbols), got %s"
                             % (_describe(table_index),))
        if not table_index.flags.c_contiguous:
            raise ValueError("table_index must be C-contiguous (use np.ascontiguousarray)")
        if table_index.shape[0] != n_channels or (n_symbols is not None and table_index.shape[1] != n_symbols):
            raise ValueError("table_index must have shape (%d, %s), got %s"
                             % (n_channels, "N" if n_symbols is None else n_symbols, table_index.shape))
        _check_n_symbols(table_index.shape[1])

    def _index_error(self, table_index):
        return ValueError("table_index must be < n_tables %d; the largest is %d"
                          % (self.n_tables, int(table_index.max())))

    def encode(self, symbols, table_index):
        """Code each row of ``symbols`` (uint8 ndarray, C-contiguous, shape (C, N), every value
        < ``alphabet_size``) on its own, symbol ``[c, i]`` with table ``table_index[c, i]``
        (uint8, C-contiguous, the same shape, every value < ``n_tables``).

        Returns ``EncodedChannels(modes, sizes, payload)``, each mode EMPTY, CONSTANT, STATIC
        or RAW.  Raises ``ValueError`` for bad arguments, including a symbol >=
        ``alphabet_size`` or a table index >= ``n_tables``.
        """
        if not isinstance(symbols, np.ndarray) or symbols.dtype != np.uint8 or symbols.ndim != 2:
            raise ValueError("symbols must be a 2-D uint8 numpy array (channels, symbols), got %s"
                             % (_describe(symbols),))
        if not symbols.flags.c_contiguous:
            raise ValueError("symbols must be C-contiguous (use np.ascontiguousarray)")
        self._check_index(table_index, *symbols.shape)
        n_channels, n_symbols = symbols.shape
        bound = int(lib.l3ic_fse_static_bound(n_channels, n_symbols, self.alphabet_size))
        dst = np.empty(max(bound, 1), np.uint8)
        modes = np.empty(n_channels, np.uint8)
        sizes = np.empty(n_channels, np.uint32)
        written = ffi.new("size_t*")
        code = lib.l3ic_fse_encode_static(
            self._tables, ffi.from_buffer("uint8_t[]", symbols), ffi.from_buffer("uint8_t[]", table_index),
            n_channels, n_symbols, ffi.from_buffer("uint8_t[]", dst, require_writable=True), bound,
            ffi.from_buffer("uint8_t[]", modes, require_writable=True),
            ffi.from_buffer("uint32_t[]", sizes, require_writable=True), written)
        if code == lib.L3IC_FSE_ERR_SYMBOL_RANGE:
            raise ValueError("symbols must be < alphabet_size %d; the largest is %d"
                             % (self.alphabet_size, int(symbols.max())))
        if code == lib.L3IC_FSE_ERR_TABLE_INDEX:
            raise self._index_error(table_index)
        if code == lib.L3IC_FSE_ERR_ALLOC:
            raise MemoryError("FSE encoder: " + _message(code))
        if code != lib.L3IC_FSE_OK:   # arguments were checked above: this is a bug
            raise RuntimeError("FSE encoder failed: %s (code %d)" % (_message(code), code))
        return EncodedChannels(modes, sizes, dst[:written[0]].tobytes())

    def decode(self, payload, modes, sizes, table_index):
        """Decode chunks laid back to back in ``payload`` (any bytes-like object): chunk ``c``
        has mode ``modes[c]`` and length ``sizes[c]``, and its symbols were coded with the
        tables ``table_index[c]`` (uint8 ndarray, C-contiguous, shape (len(modes), N): the rows
        of the channels asked for, in the order of their chunks, which may be any subset of a
        file's channels).

        Returns a uint8 array of shape (len(modes), N).  Raises ``FSEError`` if the chunks are
        not a valid coding (every byte is treated as hostile: the layout is checked before any
        chunk is decoded, and decoding cannot overrun or hang), ``ValueError`` for malformed
        arguments (wrong types or shapes, a table index >= ``n_tables``).
        """
        src, modes, sizes = _chunk_arguments(payload, modes, sizes)
        n_channels = modes.size
        self._check_index(table_index, n_channels)
        n_symbols = table_index.shape[1]
        out = np.empty((n_channels, n_symbols), np.uint8)
        where = ffi.new("size_t*", n_channels)
        code = lib.l3ic_fse_decode_static(
            self._tables, src, len(src), ffi.from_buffer("uint8_t[]", modes), ffi.from_buffer("uint32_t[]", sizes),
            ffi.from_buffer("uint8_t[]", table_index), n_channels, n_symbols,
            ffi.from_buffer("uint8_t[]", out, require_writable=True), where)
        if code == lib.L3IC_FSE_ERR_TABLE_INDEX:
            raise self._index_error(table_index)
        _raise_for(code, where[0], n_channels)
        return out
