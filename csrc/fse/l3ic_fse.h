/*
 * l3ic_fse.h - entropy coding of l3ic latent channels with FSE.
 *
 * Each latent channel (a vector of n uint8 symbol indices, all < alphabet_size)
 * is coded on its own, so that any subset of channels can be decoded without
 * the others.  The coder chooses, per channel, the smallest of the coding
 * modes below (l3ic_fse_encode_channels: modes 0..4; l3ic_fse_encode_static:
 * modes 1, 2, 3 and 5); the mode numbers and chunk layouts are part of the l3ic
 * bitstream (docs/FORMAT.md, "Chunk contents") and must never change:
 *
 *   0  L3IC_FSE_MODE_FSE       FSE normalized-count header, as written by zstd's
 *                              FSE_writeNCount() (maxSymbolValue < alphabet_size,
 *                              tableLog <= L3IC_FSE_MAX_TABLELOG), followed by the
 *                              bitstream written by FSE_compress_usingCTable().
 *   1  L3IC_FSE_MODE_CONSTANT  1 byte: every symbol equals it.
 *   2  L3IC_FSE_MODE_RAW       the symbols bit-packed at b = ceil(log2(alphabet_size))
 *                              bits each (b >= 1), least significant bit first,
 *                              ceil(n * b / 8) bytes; unused high bits are 0.
 *   3  L3IC_FSE_MODE_EMPTY     0 bytes, only for n == 0.
 *   4  L3IC_FSE_MODE_CONTEXT   (bitstream version 2) the channel as a 2-D raster of
 *                              rows of `width` symbols, each symbol optionally
 *                              replaced by its residual from a prediction (left,
 *                              up or LOCO-I median of its neighbours), split by
 *                              the activity of its neighbours (the sum of their
 *                              distances to a centre) into 1..3 streams, each coded
 *                              with mode 0..3:
 *                                u8 s0 | u8 predictor | u8 k | (k-1) u8 thresholds |
 *                                (k-1) varint counts | k u8 modes |
 *                                (k-1) varint lengths | the k sub-chunks.
 *                              docs/FORMAT.md ("CONTEXT chunks") defines it exactly.
 *                              Channels stay independent: nothing outside the
 *                              channel is used.
 *   5  L3IC_FSE_MODE_STATIC    (bitstream version 3) one tANS (FSE) bitstream in
 *                              which symbol i is coded with the static table
 *                              idx[i], one of K tables known to both sides (the
 *                              model's, see l3ic_fse_tables_create()) that share
 *                              one tableLog; the chunk has no table header.
 *                              Only for n >= 1.  With L = 1 << tableLog, zstd's
 *                              FSE state machine (fse.h, bitstream.h) and the
 *                              tables FSE_buildCTable() / FSE_buildDTable() make
 *                              from the normalized counts:
 *                                encoder: BIT_initCStream() on the chunk buffer;
 *                                one FSE_CState_t, FSE_initCState() with table
 *                                idx[n-1] (value L, i.e. decoder state 0); for
 *                                i = n-1 down to 0: point the state at table
 *                                idx[i] (its stateTable and symbolTT),
 *                                FSE_encodeSymbol(symbol[i]), BIT_flushBits();
 *                                then FSE_flushCState() (the state's low tableLog
 *                                bits) and BIT_closeCStream() (zstd's end mark, a
 *                                1 bit after the last one written, so the last
 *                                byte is non-zero).  The chunk is exactly the
 *                                bytes written.
 *                                decoder: BIT_initDStream() over the chunk (an
 *                                error, e.g. a last byte of 0, is corrupt);
 *                                FSE_initDState() with table idx[0]; for
 *                                i = 0 .. n-1: point the state at table idx[i],
 *                                symbol[i] = FSE_decodeSymbol(), BIT_reloadDStream();
 *                                a status of BIT_DStream_overflow at any point is
 *                                corrupt.  At the end BIT_endOfDStream() must be
 *                                true (every bit read, exactly) and the decoder
 *                                state must be 0 (the encoder's start state);
 *                                otherwise the chunk is corrupt.
 *                              Modes 0 and 4 do not occur with static tables; the
 *                              functions without tables reject mode 5.
 *
 * The FSE implementation is zstd's (Yann Collet), compiled into the same
 * translation unit as this glue; see build_fse.py.
 *
 * Thread safety: every function is reentrant; none keeps global state.
 * Errors: functions returning int return L3IC_FSE_OK (0) or one of the negative
 * l3ic_fse_error codes below; l3ic_fse_error_message() describes each one.
 */
#ifndef L3IC_FSE_H
#define L3IC_FSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*-*********************************************
*  Coding modes (stored in the bitstream)
***********************************************/
#define L3IC_FSE_MODE_FSE       0  /* FSE NCount header + FSE bitstream */
#define L3IC_FSE_MODE_CONSTANT  1  /* 1 byte: the symbol repeated n times */
#define L3IC_FSE_MODE_RAW       2  /* symbols bit-packed, ceil(log2(alphabet_size)) bits each */
#define L3IC_FSE_MODE_EMPTY     3  /* n == 0: no bytes */
#define L3IC_FSE_MODE_CONTEXT   4  /* predicted, 1..3 streams by neighbour activity (needs width > 0) */
#define L3IC_FSE_MODE_STATIC    5  /* format 3: one tANS stream, symbol i coded with static table idx[i] */

/*-*********************************************
*  Limits
***********************************************/
/* Largest alphabet: symbols are bytes. The smallest accepted alphabet is 2. */
#define L3IC_FSE_MAX_ALPHABET   256
/* Largest number of symbols per channel: keeps every count and size, and zstd's
 * 32-bit FSE arithmetic, far from overflow. */
#define L3IC_FSE_MAX_SYMBOLS    0x7FFFFFFFu
/* Largest FSE tableLog the encoder writes and the decoder accepts (zstd's
 * FSE_MAX_TABLELOG with its default FSE_MAX_MEMORY_USAGE of 14). */
#define L3IC_FSE_MAX_TABLELOG   12
/* Smallest tableLog of static tables (zstd's FSE_MIN_TABLELOG). */
#define L3IC_FSE_MIN_TABLELOG   5
/* Largest number of static tables in one l3ic_fse_tables (table indices are bytes). */
#define L3IC_FSE_MAX_TABLES     256

/*-*********************************************
*  Error codes
***********************************************/
enum l3ic_fse_error {
    /* Success. */
    L3IC_FSE_OK = 0,
    /* Invalid argument: a NULL pointer where data is needed, alphabet_size outside
     * 2..256, n_symbols above L3IC_FSE_MAX_SYMBOLS or not a multiple of a
     * non-zero width, n_channels * n_symbols overflowing size_t, or n_tables
     * outside 1..L3IC_FSE_MAX_TABLES. */
    L3IC_FSE_ERR_ARG = -1,
    /* Encoder: dst_capacity is too small for the coded channels; size dst with
     * l3ic_fse_encode_bound(). */
    L3IC_FSE_ERR_DST_TOO_SMALL = -2,
    /* A symbol is >= alphabet_size: in the encoder's input, or in a decoded chunk
     * (a CONSTANT byte, a RAW value, or an FSE header whose maxSymbolValue is
     * >= alphabet_size). */
    L3IC_FSE_ERR_SYMBOL_RANGE = -3,
    /* A memory allocation failed. */
    L3IC_FSE_ERR_ALLOC = -4,
    /* Decoder: a coding mode is not 0..4 (l3ic_fse_decode_channels) or not one
     * of 1, 2, 3, 5 (l3ic_fse_decode_static), or is EMPTY while n_symbols != 0,
     * or is FSE or CONTEXT while n_symbols < 2 (FSE always codes at least 2
     * symbols), or CONTEXT while width is 0 or inside a CONTEXT chunk, or
     * STATIC while n_symbols == 0. */
    L3IC_FSE_ERR_BAD_MODE = -5,
    /* Decoder: the chunk sizes do not add up to src_size, or a chunk's length does
     * not fit its mode (CONSTANT != 1 byte, RAW != ceil(n * b / 8) bytes,
     * EMPTY != 0 bytes, FSE < 2 bytes, CONTEXT < 4 bytes, STATIC < 1 byte);
     * also for the sub-chunks of a CONTEXT chunk. */
    L3IC_FSE_ERR_SIZE_MISMATCH = -6,
    /* Decoder: an FSE chunk is corrupt (invalid normalized-count header, tableLog
     * above L3IC_FSE_MAX_TABLELOG, bad bitstream, or a number of decoded symbols
     * other than n_symbols), a RAW chunk has non-zero padding bits, or a CONTEXT
     * chunk has a bad header field (predictor, stream count, thresholds not
     * increasing, a bad varint, counts above n_symbols, lengths past its end) or
     * stream counts that disagree with the activities of the decoded symbols,
     * or a STATIC chunk is not a valid stream (BIT_initDStream() fails, the
     * stream overflows, is not read to its exact end, or ends in a state other
     * than 0). */
    L3IC_FSE_ERR_CORRUPT = -7,
    /* Encoder: FSE failed in a way the glue does not expect (a bug). */
    L3IC_FSE_ERR_INTERNAL = -8,
    /* l3ic_fse_tables_create(): table_log outside L3IC_FSE_MIN_TABLELOG ..
     * L3IC_FSE_MAX_TABLELOG, a normalized count below 1, or a row of counts not
     * summing to exactly 1 << table_log. */
    L3IC_FSE_ERR_BAD_TABLE = -9,
    /* Static coding: a table index (table_idx value) is >= the number of tables. */
    L3IC_FSE_ERR_TABLE_INDEX = -10
};

/*! l3ic_fse_error_message() :
 *  @return : a static, NUL-terminated, one-line English description of `code`
 *            (an l3ic_fse_error value); "unknown error code" for other values.
 *            Never NULL; the string must not be freed. */
const char* l3ic_fse_error_message(int code);

/*! l3ic_fse_raw_size() :
 *  @return : the byte length of a RAW chunk of `n_symbols` symbols of an alphabet
 *            of `alphabet_size` symbols: ceil(n_symbols * b / 8) with
 *            b = ceil(log2(alphabet_size)), b >= 1; computed without overflow.
 *            0 if alphabet_size is outside 2..256. */
size_t l3ic_fse_raw_size(size_t n_symbols, unsigned alphabet_size);

/*! l3ic_fse_encode_bound() :
 *  @return : the dst_capacity that l3ic_fse_encode_channels() never needs more of
 *            for these arguments: n_channels * l3ic_fse_raw_size(n_symbols, alphabet_size),
 *            since every chosen chunk is at most as long as the RAW chunk.
 *            0 if the arguments are invalid (see L3IC_FSE_ERR_ARG) or the bound
 *            overflows size_t; note that valid arguments with n_symbols == 0 or
 *            n_channels == 0 also give 0, and need no space. */
size_t l3ic_fse_encode_bound(size_t n_channels, size_t n_symbols, unsigned alphabet_size);

/*! l3ic_fse_encode_channels() :
 *  Codes each of the `n_channels` rows of `symbols` (C-contiguous,
 *  [n_channels][n_symbols], every value < alphabet_size) independently, choosing
 *  per row the mode giving the shortest chunk: EMPTY if n_symbols == 0, CONSTANT
 *  if all symbols are equal, otherwise FSE if it is strictly shorter than RAW, else
 *  RAW; then, if `width` is not 0 (each row is a raster of n_symbols / width rows
 *  of `width` symbols) and n_symbols >= 3, CONTEXT if it is strictly shorter
 *  still (s0 the row's most frequent symbol, the smallest on ties; the predictor
 *  and up to two thresholds out of 0, 1, 2, 3, 4, 6, 8, 12, 16 whose streams'
 *  order-0 entropy is the smallest).  width == 0 never gives CONTEXT (version-1 streams).
 *  The chunks are written back to back into `dst`; modes[c] and sizes[c] receive channel c's mode and chunk length (arrays of n_channels entries).
 *  `dst` may be NULL only if dst_capacity is 0.  Nothing is written past
 *  dst + dst_capacity.  Deterministic: the same input gives the same bytes.
 *  @return : L3IC_FSE_OK, with *dst_written = total bytes written (the sum of
 *            sizes[]); or L3IC_FSE_ERR_ARG, L3IC_FSE_ERR_SYMBOL_RANGE,
 *            L3IC_FSE_ERR_DST_TOO_SMALL, L3IC_FSE_ERR_ALLOC, L3IC_FSE_ERR_INTERNAL,
 *            in which case the contents of dst, modes, sizes and *dst_written
 *            are unspecified. */
int l3ic_fse_encode_channels(const uint8_t* symbols, size_t n_channels, size_t n_symbols,
                             size_t width, unsigned alphabet_size,
                             uint8_t* dst, size_t dst_capacity,
                             uint8_t* modes, uint32_t* sizes, size_t* dst_written);

/*! l3ic_fse_check_layout() :
 *  Checks, without reading any chunk byte, that `n_channels` chunks described by
 *  modes[] and sizes[] can be the layout of a `src_size`-byte payload coding
 *  n_symbols symbols each (rows of `width` for CONTEXT chunks; 0: no CONTEXT):
 *  the arguments are valid, every mode is 0..4 and fits n_symbols and width,
 *  every fixed-length chunk has its length, and the sizes add up to exactly
 *  src_size (without overflow).  O(n_channels); lets a caller reject a
 *  hostile stream before allocating the output.
 *  If `err_channel` is not NULL, it receives the index of the offending channel
 *  on a per-channel error (unchanged otherwise).
 *  @return : L3IC_FSE_OK, or L3IC_FSE_ERR_ARG, L3IC_FSE_ERR_BAD_MODE,
 *            L3IC_FSE_ERR_SIZE_MISMATCH. */
int l3ic_fse_check_layout(size_t src_size, const uint8_t* modes, const uint32_t* sizes,
                          size_t n_channels, size_t n_symbols, size_t width, unsigned alphabet_size,
                          size_t* err_channel);

/*! l3ic_fse_decode_channels() :
 *  Decodes `n_channels` chunks laid back to back in `src` (src_size bytes), with
 *  modes[c] / sizes[c] the mode and length of chunk c, into `out`
 *  ([n_channels][n_symbols], C-contiguous); `width` as for
 *  l3ic_fse_check_layout() (the tile width of the channels; 0 for streams that
 *  may not hold CONTEXT chunks).  The chunks may be any subset of a
 *  file's channels, in any order: each is decoded on its own.
 *  Every input byte is treated as hostile: l3ic_fse_check_layout() runs first,
 *  then every chunk must decode to exactly n_symbols symbols, all
 *  < alphabet_size.  Nothing is read outside src[0 .. src_size) nor written outside
 *  out[0 .. n_channels * n_symbols); the time taken is linear in
 *  src_size + n_channels * n_symbols.  `src` may be NULL only if src_size is 0,
 *  `out` only if n_channels * n_symbols is 0.
 *  If `err_channel` is not NULL, it receives the index of the offending channel
 *  on a per-channel error (unchanged otherwise).
 *  @return : L3IC_FSE_OK; or L3IC_FSE_ERR_ARG, L3IC_FSE_ERR_BAD_MODE,
 *            L3IC_FSE_ERR_SIZE_MISMATCH, L3IC_FSE_ERR_SYMBOL_RANGE,
 *            L3IC_FSE_ERR_CORRUPT, L3IC_FSE_ERR_ALLOC, in which case the
 *            contents of out are unspecified. */
int l3ic_fse_decode_channels(const uint8_t* src, size_t src_size,
                             const uint8_t* modes, const uint32_t* sizes,
                             size_t n_channels, size_t n_symbols, size_t width, unsigned alphabet_size,
                             uint8_t* out, size_t* err_channel);

/*-*********************************************
*  Static tables (bitstream version 3, mode 5)
***********************************************/
/* K encode and K decode tables built from normalized counts sharing one
 * tableLog; opaque.  Read-only after creation: one l3ic_fse_tables may be used
 * by any number of threads at once. */
typedef struct l3ic_fse_tables l3ic_fse_tables;

/*! l3ic_fse_tables_create() :
 *  Builds `n_tables` static FSE tables over an alphabet of `alphabet_size`
 *  symbols from `counts`: n_tables rows (C-contiguous, [n_tables][alphabet_size])
 *  of int16 normalized counts, row k giving the counts of table k.  Every count
 *  must be >= 1 (so every symbol of the alphabet can be coded with every table;
 *  zstd's -1 "low probability" counts are not accepted) and each row must sum to
 *  exactly 1 << table_log.  The tables are those zstd's FSE_buildCTable() and
 *  FSE_buildDTable() build from a row.
 *  @counts        : n_tables * alphabet_size int16 values (not kept: may be freed after the call).
 *  @n_tables      : 1 .. L3IC_FSE_MAX_TABLES.
 *  @alphabet_size : 2 .. L3IC_FSE_MAX_ALPHABET.
 *  @table_log     : L3IC_FSE_MIN_TABLELOG .. L3IC_FSE_MAX_TABLELOG (5..12).
 *  @out           : receives the tables on success (unchanged on error); free
 *                   them with l3ic_fse_tables_free().
 *  @return : L3IC_FSE_OK; L3IC_FSE_ERR_ARG (counts or out NULL, n_tables or
 *            alphabet_size out of range); L3IC_FSE_ERR_BAD_TABLE (table_log out of
 *            range, a count < 1, a row not summing to 1 << table_log);
 *            L3IC_FSE_ERR_ALLOC. */
int l3ic_fse_tables_create(const int16_t* counts, unsigned n_tables, unsigned alphabet_size,
                           unsigned table_log, l3ic_fse_tables** out);

/*! l3ic_fse_tables_free() :
 *  Frees tables made by l3ic_fse_tables_create(); NULL is fine (does nothing). */
void l3ic_fse_tables_free(l3ic_fse_tables* tables);

/*! l3ic_fse_static_bound() :
 *  @return : the dst_capacity that l3ic_fse_encode_static() never needs more of
 *            for `n_channels` channels of `n_symbols` symbols of an alphabet of
 *            `alphabet_size` (the tables' alphabet): the same as
 *            l3ic_fse_encode_bound(), n_channels * l3ic_fse_raw_size(n_symbols,
 *            alphabet_size), since every chosen chunk is at most as long as
 *            the RAW chunk.  0 if the arguments are invalid or the bound
 *            overflows size_t (and for valid arguments with n_symbols == 0 or
 *            n_channels == 0, which need no space). */
size_t l3ic_fse_static_bound(size_t n_channels, size_t n_symbols, unsigned alphabet_size);

/*! l3ic_fse_encode_static() :
 *  Codes each of the `n_channels` rows of `symbols` (C-contiguous,
 *  [n_channels][n_symbols], every value < the tables' alphabet_size) on its own,
 *  symbol i of row c with table table_idx[c][i] (table_idx: same shape, every
 *  value < the tables' n_tables), choosing per row: EMPTY if n_symbols == 0;
 *  else CONSTANT if all symbols are equal (1 byte, never longer than a STATIC
 *  chunk, which holds at least the end mark); else STATIC if its chunk is
 *  strictly shorter than the RAW chunk; else RAW.
 *  The chunks are written back to back into `dst`; modes[c] and sizes[c]
 *  receive channel c's mode and chunk length (arrays of n_channels entries).
 *  `dst` may be NULL only if dst_capacity is 0.  Nothing is written past
 *  dst + dst_capacity; the chosen modes do not depend on dst_capacity.
 *  Deterministic: the same input gives the same bytes.
 *  @tables       : from l3ic_fse_tables_create().
 *  @symbols      : n_channels * n_symbols bytes (may be NULL if that is 0).
 *  @table_idx    : n_channels * n_symbols table indices (may be NULL if that is 0).
 *  @n_channels, @n_symbols : the shape; n_symbols <= L3IC_FSE_MAX_SYMBOLS.
 *  @dst, @dst_capacity : the output; l3ic_fse_static_bound() bytes always suffice.
 *  @modes, @sizes : n_channels entries each (may be NULL if n_channels is 0).
 *  @dst_written  : receives the total bytes written (the sum of sizes[]).
 *  @return : L3IC_FSE_OK; or L3IC_FSE_ERR_ARG, L3IC_FSE_ERR_SYMBOL_RANGE (a
 *            symbol >= alphabet_size), L3IC_FSE_ERR_TABLE_INDEX (a table index
 *            >= n_tables), L3IC_FSE_ERR_DST_TOO_SMALL, L3IC_FSE_ERR_ALLOC, in
 *            which case the contents of dst, modes, sizes and *dst_written are
 *            unspecified. */
int l3ic_fse_encode_static(const l3ic_fse_tables* tables, const uint8_t* symbols, const uint8_t* table_idx,
                           size_t n_channels, size_t n_symbols, uint8_t* dst, size_t dst_capacity,
                           uint8_t* modes, uint32_t* sizes, size_t* dst_written);

/*! l3ic_fse_decode_static() :
 *  Decodes `n_channels` chunks laid back to back in `src` (src_size bytes), with
 *  modes[c] / sizes[c] the mode and length of chunk c, into `out`
 *  ([n_channels][n_symbols], C-contiguous).  The modes may be STATIC, CONSTANT,
 *  RAW or EMPTY (FSE and CONTEXT, and anything else, are L3IC_FSE_ERR_BAD_MODE).
 *  table_idx ([n_channels][n_symbols], C-contiguous) holds the table indices of
 *  the chunks in the order given: row c those of chunk c, so a caller decoding a
 *  subset of a file's channels passes their rows, in the same order as their
 *  chunks.  Every byte of src, modes and sizes is treated as hostile: first the
 *  whole layout is checked (every mode allowed and fitting n_symbols, STATIC
 *  needing n_symbols >= 1 and a length >= 1, every fixed-length chunk having its
 *  length, the sizes adding up to exactly src_size), then every table index,
 *  all before any chunk is decoded; then every chunk must decode to exactly
 *  n_symbols symbols < alphabet_size.  Nothing is read outside src[0 .. src_size)
 *  nor written outside out[0 .. n_channels * n_symbols); the time taken is
 *  linear in src_size + n_channels * n_symbols.
 *  @tables       : from l3ic_fse_tables_create() (its alphabet_size applies).
 *  @src          : may be NULL only if src_size is 0.
 *  @modes, @sizes : n_channels entries each (may be NULL if n_channels is 0).
 *  @table_idx    : n_channels * n_symbols bytes (may be NULL if that is 0),
 *                  every value < n_tables (the rows of all chunks are checked,
 *                  whatever their mode).
 *  @out          : n_channels * n_symbols bytes (may be NULL if that is 0).
 *  @err_channel  : if not NULL, receives the index of the offending channel on a
 *                  per-channel error (unchanged otherwise).
 *  @return : L3IC_FSE_OK; or L3IC_FSE_ERR_ARG, L3IC_FSE_ERR_BAD_MODE,
 *            L3IC_FSE_ERR_SIZE_MISMATCH, L3IC_FSE_ERR_TABLE_INDEX,
 *            L3IC_FSE_ERR_SYMBOL_RANGE (a CONSTANT or RAW symbol >= alphabet_size),
 *            L3IC_FSE_ERR_CORRUPT, in which case the contents of out are
 *            unspecified. */
int l3ic_fse_decode_static(const l3ic_fse_tables* tables, const uint8_t* src, size_t src_size,
                           const uint8_t* modes, const uint32_t* sizes, const uint8_t* table_idx,
                           size_t n_channels, size_t n_symbols, uint8_t* out, size_t* err_channel);

#ifdef __cplusplus
}
#endif

#endif /* L3IC_FSE_H */
