/*
 * l3ic_fse.c - per-channel FSE coding of l3ic latents; see l3ic_fse.h.
 *
 * This file #includes zstd's single-file amalgamation "zstd.c" (found through
 * the include path set by build_fse.py; it is never copied into this
 * repository), so that FSE's building blocks, which a shared libzstd does not
 * export, are compiled into the same translation unit as this glue.  zstd's
 * symbols are given hidden visibility so the extension exports only its own.
 */
/* As zstd.c does (for qsort_r), before any system header. */
#if defined(__linux) || defined(__linux__) || defined(linux) || defined(__gnu_linux__) || \
    defined(__CYGWIN__) || defined(__MSYS__)
#  if !defined(_GNU_SOURCE) && !defined(__ANDROID__)
#    define _GNU_SOURCE   /* as zstd.c does: must precede every system header */
#  endif
#endif
#include "l3ic_fse.h"

/* The system headers zstd.c includes, included here first, outside the hidden
 * visibility region below: declaring libc functions hidden would break linking. */
#include <assert.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32) && !defined(__EMSCRIPTEN__)
#  include <pthread.h>   /* zstd.c defines ZSTD_MULTITHREAD; we never start a thread */
#endif

#define FSE_STATIC_LINKING_ONLY
#define ZSTD_STATIC_LINKING_ONLY
/* Keep zstd's public API out of the extension's dynamic symbol table. */
#define ZSTDLIB_VISIBLE
#define ZSTDERRORLIB_VISIBLE
#define ZDICTLIB_VISIBLE
#if defined(__GNUC__) && !defined(_WIN32) && !defined(__CYGWIN__)
#  define L3IC_HIDE_ZSTD 1
#  pragma GCC visibility push(hidden)
#endif
#include "zstd.c"
#ifdef L3IC_HIDE_ZSTD
#  pragma GCC visibility pop
#endif

#if L3IC_FSE_MAX_TABLELOG != FSE_MAX_TABLELOG
#  error "L3IC_FSE_MAX_TABLELOG must equal zstd's FSE_MAX_TABLELOG: it is part of the bitstream"
#endif
#if FSE_MAX_SYMBOL_VALUE != 255
#  error "FSE_MAX_SYMBOL_VALUE must be 255"
#endif


/*-*********************************************
*  Common helpers
***********************************************/
const char* l3ic_fse_error_message(int code)
{
    switch (code) {
    case L3IC_FSE_OK: return "no error";
    case L3IC_FSE_ERR_ARG: return "invalid argument (alphabet size outside 2..256, too many symbols, or a missing buffer)";
    case L3IC_FSE_ERR_DST_TOO_SMALL: return "destination buffer too small for the coded channels";
    case L3IC_FSE_ERR_SYMBOL_RANGE: return "symbol outside the alphabet";
    case L3IC_FSE_ERR_ALLOC: return "out of memory";
    case L3IC_FSE_ERR_BAD_MODE: return "invalid coding mode for the channel";
    case L3IC_FSE_ERR_SIZE_MISMATCH: return "chunk lengths do not match the payload size or the coding modes";
    case L3IC_FSE_ERR_CORRUPT: return "corrupt entropy-coded chunk";
    case L3IC_FSE_ERR_INTERNAL: return "internal error in the FSE encoder";
    default: return "unknown error code";
    }
}

/* Bits per RAW symbol: ceil(log2(alphabet_size)), at least 1. */
static unsigned raw_bits(unsigned alphabet_size)
{
    unsigned b = 1;
    while ((1u << b) < alphabet_size) b++;
    return b;
}

static int alphabet_ok(unsigned alphabet_size)
{
    return alphabet_size >= 2 && alphabet_size <= L3IC_FSE_MAX_ALPHABET;
}

size_t l3ic_fse_raw_size(size_t n_symbols, unsigned alphabet_size)
{
    size_t b;
    if (!alphabet_ok(alphabet_size)) return 0;
    b = raw_bits(alphabet_size);
    /* ceil(n * b / 8) without forming n * b, which may overflow */
    return (n_symbols / 8) * b + ((n_symbols % 8) * b + 7) / 8;
}

size_t l3ic_fse_encode_bound(size_t n_channels, size_t n_symbols, unsigned alphabet_size)
{
    size_t raw;
    if (!alphabet_ok(alphabet_size) || n_symbols > L3IC_FSE_MAX_SYMBOLS) return 0;
    raw = l3ic_fse_raw_size(n_symbols, alphabet_size);
    if (raw != 0 && n_channels > SIZE_MAX / raw) return 0;
    return n_channels * raw;
}

/* Largest of n bytes (0 if n == 0); a loop compilers vectorize. */
static unsigned max_byte(const uint8_t* p, size_t n)
{
    uint8_t biggest = 0;
    size_t i;
    for (i = 0; i < n; i++) biggest = p[i] > biggest ? p[i] : biggest;
    return biggest;
}

/* Packs n symbols at b bits each, LSB first, into exactly raw_size(n) bytes. */
static void raw_pack(uint8_t* dst, const uint8_t* src, size_t n, unsigned b)
{
    uint64_t acc = 0;
    unsigned nbits = 0;
    size_t i;
    if (b == 8) { memcpy(dst, src, n); return; }
    for (i = 0; i < n; i++) {
        acc |= (uint64_t)src[i] << nbits;
        nbits += b;
        while (nbits >= 8) {
            *dst++ = (uint8_t)acc;
            acc >>= 8;
            nbits -= 8;
        }
    }
    if (nbits) *dst = (uint8_t)acc;
}

/* Unpacks n b-bit symbols from exactly raw_size(n) bytes at src.
 * @return : L3IC_FSE_OK, L3IC_FSE_ERR_SYMBOL_RANGE or L3IC_FSE_ERR_CORRUPT (padding). */
static int raw_unpack(uint8_t* dst, const uint8_t* src, size_t n, unsigned b, unsigned alphabet_size)
{
    uint64_t acc = 0;
    unsigned nbits = 0;
    unsigned const mask = (1u << b) - 1;
    unsigned biggest = 0;
    size_t i;
    if (b == 8) {   /* alphabet 129..256 */
        memcpy(dst, src, n);
        return alphabet_size == 256 || max_byte(dst, n) < alphabet_size ? L3IC_FSE_OK : L3IC_FSE_ERR_SYMBOL_RANGE;
    }
    for (i = 0; i < n; i++) {
        unsigned s;
        if (nbits < b) {   /* b <= 7: one byte always suffices */
            acc |= (uint64_t)(*src++) << nbits;
            nbits += 8;
        }
        s = (unsigned)acc & mask;
        acc >>= b;
        nbits -= b;
        dst[i] = (uint8_t)s;
        biggest = s > biggest ? s : biggest;
    }
    if (acc != 0) return L3IC_FSE_ERR_CORRUPT;   /* non-zero padding bits */
    if (biggest >= alphabet_size) return L3IC_FSE_ERR_SYMBOL_RANGE;
    return L3IC_FSE_OK;
}


/*-*********************************************
*  Encoder
***********************************************/
typedef struct {
    unsigned count[FSE_MAX_SYMBOL_VALUE + 1];
    short norm[FSE_MAX_SYMBOL_VALUE + 1];
    FSE_CTable ctable[FSE_CTABLE_SIZE_U32(FSE_MAX_TABLELOG, FSE_MAX_SYMBOL_VALUE)];
    unsigned build_wksp[FSE_BUILD_CTABLE_WORKSPACE_SIZE_U32(FSE_MAX_SYMBOL_VALUE, FSE_MAX_TABLELOG)];
    unsigned hist_wksp[HIST_WKSP_SIZE_U32];
    uint8_t ncount[FSE_NCOUNTBOUND];
} encode_wksp;

/* Tries FSE on one channel (n >= 3, at least 2 distinct symbols, histogram in
 * w->count).  Writes the chunk at dst if it is shorter than `limit` bytes and
 * fits in dst_capacity.  `scratch` (FSE_BLOCKBOUND(n) bytes) holds the bitstream
 * so that FSE may use its fast, unchecked path.
 * @return : the chunk length, or 0 if FSE is not shorter than limit, does not fit,
 *           or declines the input (FSE errors on odd distributions, e.g. a failed
 *           normalization, are not fatal: the caller falls back to RAW). */
static size_t encode_fse(encode_wksp* w, const uint8_t* src, size_t n, unsigned max_symbol,
                         uint8_t* scratch, uint8_t* dst, size_t dst_capacity, size_t limit)
{
    unsigned const table_log = FSE_optimalTableLog(FSE_MAX_TABLELOG, n, max_symbol);
    size_t header, body, r;

    r = FSE_normalizeCount(w->norm, table_log, w->count, n, max_symbol, /* useLowProbCount */ n >= 2048);
    if (FSE_isError(r) || r == 0) return 0;   /* 0: a single symbol, which CONSTANT handles */
    header = FSE_writeNCount(w->ncount, sizeof(w->ncount), w->norm, max_symbol, table_log);
    if (FSE_isError(header) || header + 1 >= limit) return 0;   /* the bitstream takes >= 1 byte */
    r = FSE_buildCTable_wksp(w->ctable, w->norm, max_symbol, table_log, w->build_wksp, sizeof(w->build_wksp));
    if (FSE_isError(r)) return 0;
    body = FSE_compress_usingCTable(scratch, FSE_BLOCKBOUND(n), src, n, w->ctable);
    if (FSE_isError(body) || body == 0 || header + body >= limit || header + body > dst_capacity) return 0;
    memcpy(dst, w->ncount, header);
    memcpy(dst + header, scratch, body);
    return header + body;
}

int l3ic_fse_encode_channels(const uint8_t* symbols, size_t n_channels, size_t n_symbols,
                             unsigned alphabet_size,
                             uint8_t* dst, size_t dst_capacity,
                             uint8_t* modes, uint32_t* sizes, size_t* dst_written)
{
    size_t const raw = l3ic_fse_raw_size(n_symbols, alphabet_size);
    unsigned const b = alphabet_ok(alphabet_size) ? raw_bits(alphabet_size) : 8;
    encode_wksp* w = NULL;
    uint8_t* scratch = NULL;
    size_t pos = 0, c;
    int err = L3IC_FSE_OK;

    if (!alphabet_ok(alphabet_size) || n_symbols > L3IC_FSE_MAX_SYMBOLS || dst_written == NULL
        || (n_channels != 0 && (modes == NULL || sizes == NULL))
        || (n_symbols != 0 && n_channels > SIZE_MAX / n_symbols)
        || (n_channels != 0 && n_symbols != 0 && symbols == NULL)
        || (dst == NULL && dst_capacity != 0))
        return L3IC_FSE_ERR_ARG;
    *dst_written = 0;
    if (n_symbols >= 3 && n_channels != 0) {
        w = (encode_wksp*)malloc(sizeof(*w));
        scratch = (uint8_t*)malloc(FSE_BLOCKBOUND(n_symbols));
        if (w == NULL || scratch == NULL) { err = L3IC_FSE_ERR_ALLOC; goto done; }
    }

    for (c = 0; c < n_channels; c++) {
        const uint8_t* const src = symbols != NULL ? symbols + c * n_symbols : NULL;   /* NULL: n_symbols == 0 */
        uint8_t* const out = dst != NULL ? dst + pos : NULL;   /* NULL only if dst_capacity == 0 */
        size_t const room = dst_capacity - pos;
        size_t len = 0;
        uint8_t mode;

        if (n_symbols == 0) {
            mode = L3IC_FSE_MODE_EMPTY;
        } else {
            unsigned max_symbol = FSE_MAX_SYMBOL_VALUE;
            size_t largest;
            if (w != NULL) {
                largest = HIST_count_wksp(w->count, &max_symbol, src, n_symbols, w->hist_wksp, sizeof(w->hist_wksp));
                if (HIST_isError(largest)) { err = L3IC_FSE_ERR_INTERNAL; goto done; }
            } else {   /* 1 or 2 symbols */
                largest = (n_symbols == 1 || src[0] == src[1]) ? n_symbols : 1;
                max_symbol = n_symbols == 1 || src[0] > src[1] ? src[0] : src[1];
            }
            if (max_symbol >= alphabet_size) { err = L3IC_FSE_ERR_SYMBOL_RANGE; goto done; }
            if (largest == n_symbols) {
                mode = L3IC_FSE_MODE_CONSTANT;
                len = 1;
                if (room < len) { err = L3IC_FSE_ERR_DST_TOO_SMALL; goto done; }
                out[0] = src[0];
            } else {
                mode = L3IC_FSE_MODE_RAW;
                if (w != NULL) {
                    len = encode_fse(w, src, n_symbols, max_symbol, scratch, out, room, raw);
                    if (len != 0) mode = L3IC_FSE_MODE_FSE;
                }
                if (mode == L3IC_FSE_MODE_RAW) {
                    len = raw;
                    if (room < len) { err = L3IC_FSE_ERR_DST_TOO_SMALL; goto done; }
                    raw_pack(out, src, n_symbols, b);
                }
            }
        }
        modes[c] = mode;
        sizes[c] = (uint32_t)len;   /* len <= raw <= L3IC_FSE_MAX_SYMBOLS */
        pos += len;
    }
    *dst_written = pos;

done:
    free(scratch);
    free(w);
    return err;
}


/*-*********************************************
*  Decoder
***********************************************/
int l3ic_fse_check_layout(size_t src_size, const uint8_t* modes, const uint32_t* sizes,
                          size_t n_channels, size_t n_symbols, unsigned alphabet_size,
                          size_t* err_channel)
{
    size_t const raw = l3ic_fse_raw_size(n_symbols, alphabet_size);
    size_t total = 0, c;

    if (!alphabet_ok(alphabet_size) || n_symbols > L3IC_FSE_MAX_SYMBOLS
        || (n_channels != 0 && (modes == NULL || sizes == NULL)))
        return L3IC_FSE_ERR_ARG;
    for (c = 0; c < n_channels; c++) {
        size_t const len = sizes[c];
        int ok;
        switch (modes[c]) {
        case L3IC_FSE_MODE_FSE:
            if (n_symbols < 2) goto bad_mode;
            ok = len >= 2;
            break;
        case L3IC_FSE_MODE_CONSTANT:
            if (n_symbols == 0) goto bad_mode;
            ok = len == 1;
            break;
        case L3IC_FSE_MODE_RAW:
            if (n_symbols == 0) goto bad_mode;
            ok = len == raw;
            break;
        case L3IC_FSE_MODE_EMPTY:
            if (n_symbols != 0) goto bad_mode;
            ok = len == 0;
            break;
        default:
            goto bad_mode;
        }
        if (!ok || len > src_size - total) {   /* total <= src_size: no overflow */
            if (err_channel) *err_channel = c;
            return L3IC_FSE_ERR_SIZE_MISMATCH;
        }
        total += len;
        continue;
    bad_mode:
        if (err_channel) *err_channel = c;
        return L3IC_FSE_ERR_BAD_MODE;
    }
    return total == src_size ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
}

typedef struct {
    short ncount[FSE_MAX_SYMBOL_VALUE + 1];
    unsigned wksp[FSE_DECOMPRESS_WKSP_SIZE_U32(FSE_MAX_TABLELOG, FSE_MAX_SYMBOL_VALUE)];
} decode_wksp;

/* Decodes one FSE chunk of len >= 2 bytes into exactly n >= 2 symbols. */
static int decode_fse(decode_wksp* w, int bmi2, const uint8_t* src, size_t len,
                      uint8_t* out, size_t n, unsigned alphabet_size)
{
    unsigned max_symbol = FSE_MAX_SYMBOL_VALUE, table_log = 0;
    size_t r = FSE_readNCount(w->ncount, &max_symbol, &table_log, src, len);
    uint8_t small[16];

    if (FSE_isError(r) || table_log > FSE_MAX_TABLELOG || r >= len) return L3IC_FSE_ERR_CORRUPT;
    if (max_symbol >= alphabet_size) return L3IC_FSE_ERR_SYMBOL_RANGE;
    if (n < sizeof(small)) {
        /* FSE's decoder forms pointers up to 3 bytes before a too-small dst */
        r = FSE_decompress_wksp_bmi2(small, sizeof(small), src, len, FSE_MAX_TABLELOG, w->wksp, sizeof(w->wksp), bmi2);
        if (!FSE_isError(r) && r == n) memcpy(out, small, n);
    } else {
        r = FSE_decompress_wksp_bmi2(out, n, src, len, FSE_MAX_TABLELOG, w->wksp, sizeof(w->wksp), bmi2);
    }
    if (FSE_isError(r) || r != n) return L3IC_FSE_ERR_CORRUPT;
    /* Cannot fail after the max_symbol check; cheap enough to keep as a guard. */
    return max_byte(out, n) < alphabet_size ? L3IC_FSE_OK : L3IC_FSE_ERR_SYMBOL_RANGE;
}

int l3ic_fse_decode_channels(const uint8_t* src, size_t src_size,
                             const uint8_t* modes, const uint32_t* sizes,
                             size_t n_channels, size_t n_symbols, unsigned alphabet_size,
                             uint8_t* out, size_t* err_channel)
{
    decode_wksp* w = NULL;
    int bmi2 = 0;
    size_t pos = 0, c;
    unsigned b;
    int err = l3ic_fse_check_layout(src_size, modes, sizes, n_channels, n_symbols, alphabet_size, err_channel);

    if (err != L3IC_FSE_OK) return err;
    if ((src == NULL && src_size != 0)
        || (n_symbols != 0 && n_channels > SIZE_MAX / n_symbols)
        || (out == NULL && n_symbols != 0 && n_channels != 0))
        return L3IC_FSE_ERR_ARG;
    b = raw_bits(alphabet_size);

    for (c = 0; c < n_channels && err == L3IC_FSE_OK; c++) {
        const uint8_t* const chunk = src != NULL ? src + pos : NULL;   /* NULL only if every len is 0 */
        uint8_t* const dst = out != NULL ? out + c * n_symbols : NULL;   /* NULL only if n_symbols is 0 */
        size_t const len = sizes[c];
        switch (modes[c]) {
        case L3IC_FSE_MODE_FSE:
            if (w == NULL) {
                w = (decode_wksp*)malloc(sizeof(*w));
                if (w == NULL) { err = L3IC_FSE_ERR_ALLOC; break; }
#if DYNAMIC_BMI2
                bmi2 = ZSTD_cpuid_bmi2(ZSTD_cpuid());
#endif
            }
            err = decode_fse(w, bmi2, chunk, len, dst, n_symbols, alphabet_size);
            break;
        case L3IC_FSE_MODE_CONSTANT:
            if (chunk[0] >= alphabet_size) err = L3IC_FSE_ERR_SYMBOL_RANGE;
            else memset(dst, chunk[0], n_symbols);
            break;
        case L3IC_FSE_MODE_RAW:
            err = raw_unpack(dst, chunk, n_symbols, b, alphabet_size);
            break;
        default:   /* EMPTY: nothing to write */
            break;
        }
        if (err != L3IC_FSE_OK && err_channel) *err_channel = c;
        pos += len;
    }
    free(w);
    return err;
}
