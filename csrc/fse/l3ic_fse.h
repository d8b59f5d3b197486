/*
 * l3ic_fse.h - entropy coding of l3ic latent channels with FSE.
 *
 * Each latent channel (a vector of n uint8 symbol indices, all < alphabet_size)
 * is coded on its own, so that any subset of channels can be decoded without
 * the others.  The coder chooses, per channel, the smallest of five coding
 * modes; the mode numbers and chunk layouts are part of the l3ic bitstream
 * (docs/FORMAT.md, "Chunk contents") and must never change:
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

/*-*********************************************
*  Error codes
***********************************************/
enum l3ic_fse_error {
    /* Success. */
    L3IC_FSE_OK = 0,
    /* Invalid argument: a NULL pointer where data is needed, alphabet_size outside
     * 2..256, n_symbols above L3IC_FSE_MAX_SYMBOLS or not a multiple of a
     * non-zero width, or n_channels * n_symbols overflowing size_t. */
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
    /* Decoder: a coding mode is not 0..4, or is EMPTY while n_symbols != 0, or is
     * FSE or CONTEXT while n_symbols < 2 (FSE always codes at least 2 symbols), or
     * CONTEXT while width is 0 or inside a CONTEXT chunk. */
    L3IC_FSE_ERR_BAD_MODE = -5,
    /* Decoder: the chunk sizes do not add up to src_size, or a chunk's length does
     * not fit its mode (CONSTANT != 1 byte, RAW != ceil(n * b / 8) bytes,
     * EMPTY != 0 bytes, FSE < 2 bytes, CONTEXT < 4 bytes); also for the
     * sub-chunks of a CONTEXT chunk. */
    L3IC_FSE_ERR_SIZE_MISMATCH = -6,
    /* Decoder: an FSE chunk is corrupt (invalid normalized-count header, tableLog
     * above L3IC_FSE_MAX_TABLELOG, bad bitstream, or a number of decoded symbols
     * other than n_symbols), a RAW chunk has non-zero padding bits, or a CONTEXT
     * chunk has a bad header field (predictor, stream count, thresholds not
     * increasing, a bad varint, counts above n_symbols, lengths past its end) or
     * stream counts that disagree with the activities of the decoded symbols. */
    L3IC_FSE_ERR_CORRUPT = -7,
    /* Encoder: FSE failed in a way the glue does not expect (a bug). */
    L3IC_FSE_ERR_INTERNAL = -8
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

#ifdef __cplusplus
}
#endif

#endif /* L3IC_FSE_H */
