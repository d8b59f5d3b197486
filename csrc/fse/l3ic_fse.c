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
#if L3IC_FSE_MIN_TABLELOG != FSE_MIN_TABLELOG
#  error "L3IC_FSE_MIN_TABLELOG must equal zstd's FSE_MIN_TABLELOG"
#endif


/* Workspace of FSE_buildCTable_wksp() for any alphabet and tableLog. zstd's
 * FSE_BUILD_CTABLE_WORKSPACE_SIZE_U32 rounds (maxSymbolValue + 2 + 2^tableLog) / 2
 * down, one U32 short of what the builder writes when that sum is odd (alphabet
 * 256 at tableLog 12: found by benchmarks.fuzz under ASan), hence the + 1. */
#define L3IC_BUILD_CTABLE_WKSP_U32 (FSE_BUILD_CTABLE_WORKSPACE_SIZE_U32(FSE_MAX_SYMBOL_VALUE, FSE_MAX_TABLELOG) + 1)

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
    case L3IC_FSE_ERR_BAD_TABLE: return "invalid static FSE tables (table_log outside 5..12, a count below 1, or a row of counts not summing to 1 << table_log)";
    case L3IC_FSE_ERR_TABLE_INDEX: return "table index outside the static tables";
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


/* Writes v (< 2^35) as an LEB128 varint; @return : its length, 1..5 bytes. */
static size_t varint_write(uint8_t* dst, size_t v)
{
    size_t len = 0;
    while (v >= 0x80) { dst[len++] = (uint8_t)(v | 0x80); v >>= 7; }
    dst[len++] = (uint8_t)v;
    return len;
}

/* Reads a varint as docs/FORMAT.md defines it (LEB128, at most 5 bytes, value
 * below 2^32, minimal: a multi-byte varint does not end in 0x00) from src[0 .. len).
 * @return : the bytes it takes, or 0 if it is not such a varint within len bytes. */
static size_t varint_read(const uint8_t* src, size_t len, size_t* v)
{
    size_t i;
    uint64_t value = 0;
    for (i = 0; i < len && i < 5; i++) {
        value |= (uint64_t)(src[i] & 0x7F) << (7 * i);
        if (!(src[i] & 0x80)) {
            if ((i > 0 && src[i] == 0) || value > 0xFFFFFFFFu) return 0;
            *v = (size_t)value;
            return i + 1;
        }
    }
    return 0;
}

/*-*********************************************
*  CONTEXT mode: the model encoder and decoder share
***********************************************/
#define L3IC_CONTEXT_MAX_STREAMS 3
#define L3IC_CONTEXT_PREDICTORS 4   /* none, left, up, median */

/* How a CONTEXT chunk turns a raster into streams (its header, docs/FORMAT.md). */
typedef struct {
    unsigned s0;          /* the symbol of neighbours outside the raster */
    unsigned predictor;   /* 0 none, 1 left, 2 up, 3 median of left, up, left + up - up-left */
    unsigned k;           /* number of streams, 1..L3IC_CONTEXT_MAX_STREAMS */
    unsigned threshold[L3IC_CONTEXT_MAX_STREAMS - 1];   /* strictly increasing */
} context_model;

/* The prediction of x[i] from its neighbours before i (predictor 1..3). */
static unsigned predict(const uint8_t* x, size_t i, size_t col, size_t width, const context_model* m)
{
    unsigned const a = col > 0 ? x[i - 1] : m->s0;                          /* left */
    unsigned const b = i >= width ? x[i - width] : m->s0;                   /* up */
    unsigned const c = col > 0 && i >= width ? x[i - width - 1] : m->s0;    /* up-left */
    unsigned const lo = a < b ? a : b, hi = a < b ? b : a;
    if (m->predictor == 1) return a;
    if (m->predictor == 2) return b;
    return c >= hi ? lo : c <= lo ? hi : a + b - c;   /* LOCO-I's median predictor: within [lo, hi] */
}

/* The coded symbol t of x (and back): the prediction residual, centred on
 * alphabet_size / 2 and wrapped into the alphabet, or x itself without prediction. */
static unsigned to_residual(unsigned x, unsigned pred, unsigned alphabet_size)
{
    return (x + alphabet_size - pred + alphabet_size / 2) % alphabet_size;
}

static unsigned from_residual(unsigned t, unsigned pred, unsigned alphabet_size)
{
    return (t + pred + alphabet_size - alphabet_size / 2) % alphabet_size;
}

/* The value coded symbols cluster around: s0, or the zero residual. */
static unsigned context_centre(const context_model* m, unsigned alphabet_size)
{
    return m->predictor ? alphabet_size / 2 : m->s0;
}

/* The activity at position i of a raster of coded symbols t (col = i mod width):
 * the sum of |t - centre| over the left, upper-left, upper and upper-right
 * neighbours, those outside the raster adding 0. */
static unsigned activity(const uint8_t* t, size_t i, size_t col, size_t width, unsigned centre)
{
#define L3IC_ABSDIFF(v) ((unsigned)(v) > centre ? (unsigned)(v) - centre : centre - (unsigned)(v))
    unsigned act = col > 0 ? L3IC_ABSDIFF(t[i - 1]) : 0;
    if (i >= width) {
        act += L3IC_ABSDIFF(t[i - width]);
        if (col > 0) act += L3IC_ABSDIFF(t[i - width - 1]);
        if (col + 1 < width) act += L3IC_ABSDIFF(t[i - width + 1]);
    }
    return act;
#undef L3IC_ABSDIFF
}

/* The stream of a position: how many thresholds its activity exceeds. */
static unsigned stream_of(unsigned act, const context_model* m)
{
    unsigned j = 0;
    while (j + 1 < m->k && act > m->threshold[j]) j++;
    return j;
}


/*-*********************************************
*  Encoder
***********************************************/
typedef struct {
    unsigned count[FSE_MAX_SYMBOL_VALUE + 1];
    short norm[FSE_MAX_SYMBOL_VALUE + 1];
    FSE_CTable ctable[FSE_CTABLE_SIZE_U32(FSE_MAX_TABLELOG, FSE_MAX_SYMBOL_VALUE)];
    unsigned build_wksp[L3IC_BUILD_CTABLE_WKSP_U32];
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

/* Codes one stream of n symbols with the shortest of EMPTY / CONSTANT / FSE / RAW
 * at dst (room bytes).  `w` and `scratch` are needed (non-NULL) only if n >= 3.
 * @return : L3IC_FSE_OK with *mode and *len set; or L3IC_FSE_ERR_SYMBOL_RANGE,
 *           L3IC_FSE_ERR_DST_TOO_SMALL, L3IC_FSE_ERR_INTERNAL. */
static int encode_plain(encode_wksp* w, const uint8_t* src, size_t n, unsigned alphabet_size,
                        uint8_t* scratch, uint8_t* dst, size_t room, uint8_t* mode, size_t* len)
{
    size_t const raw = l3ic_fse_raw_size(n, alphabet_size);
    unsigned max_symbol = FSE_MAX_SYMBOL_VALUE;
    size_t largest;

    *len = 0;
    if (n == 0) { *mode = L3IC_FSE_MODE_EMPTY; return L3IC_FSE_OK; }
    if (n >= 3) {
        largest = HIST_count_wksp(w->count, &max_symbol, src, n, w->hist_wksp, sizeof(w->hist_wksp));
        if (HIST_isError(largest)) return L3IC_FSE_ERR_INTERNAL;
    } else {   /* 1 or 2 symbols */
        largest = (n == 1 || src[0] == src[1]) ? n : 1;
        max_symbol = n == 1 || src[0] > src[1] ? src[0] : src[1];
    }
    if (max_symbol >= alphabet_size) return L3IC_FSE_ERR_SYMBOL_RANGE;
    if (largest == n) {
        if (room < 1) return L3IC_FSE_ERR_DST_TOO_SMALL;
        dst[0] = src[0];
        *mode = L3IC_FSE_MODE_CONSTANT;
        *len = 1;
        return L3IC_FSE_OK;
    }
    if (n >= 3) {
        *len = encode_fse(w, src, n, max_symbol, scratch, dst, room, raw);
        if (*len != 0) { *mode = L3IC_FSE_MODE_FSE; return L3IC_FSE_OK; }
    }
    if (room < raw) return L3IC_FSE_ERR_DST_TOO_SMALL;
    raw_pack(dst, src, n, raw_bits(alphabet_size));
    *mode = L3IC_FSE_MODE_RAW;
    *len = raw;
    return L3IC_FSE_OK;
}

/* The thresholds the encoder tries (any increasing 0..255 decode); an activity
 * above the last one behaves the same for all of them. */
static const uint8_t context_thresholds[] = {0, 1, 2, 3, 4, 6, 8, 12, 16};
#define L3IC_N_THRESHOLDS (sizeof(context_thresholds))
#define L3IC_ACTIVITY_BUCKETS 18   /* activity 0..16, and 17 for "above 16" */

/* Buffers for trying the CONTEXT mode on a channel of n symbols. */
typedef struct {
    uint8_t* t;          /* n bytes: the coded symbols (residuals or the symbols themselves) */
    uint8_t* bucket;     /* n bytes: min(activity, 17) of every position */
    uint8_t* split;      /* n bytes: the streams, one after the other */
    uint8_t* sub;        /* raw_size(n) + L3IC_CONTEXT_MAX_STREAMS bytes: the sub-chunks back to back */
    unsigned cum[L3IC_ACTIVITY_BUCKETS][L3IC_FSE_MAX_ALPHABET];   /* per symbol: positions with bucket <= row */
} context_buffers;

/* Fills buf->t and buf->bucket for model m (its thresholds unused). */
static void context_transform(const uint8_t* x, size_t n, size_t width, unsigned alphabet_size,
                              const context_model* m, context_buffers* buf)
{
    unsigned const centre = context_centre(m, alphabet_size);
    size_t i, col;
    for (i = 0, col = 0; i < n; i++, col = col + 1 == width ? 0 : col + 1) {
        unsigned act;
        buf->t[i] = (uint8_t)(m->predictor ? to_residual(x[i], predict(x, i, col, width, m), alphabet_size) : x[i]);
        act = activity(buf->t, i, col, width, centre);
        buf->bucket[i] = (uint8_t)(act < L3IC_ACTIVITY_BUCKETS - 1 ? act : L3IC_ACTIVITY_BUCKETS - 1);
    }
}

/* log2(v) for v >= 1, in 1/65536 bits, in integer arithmetic (so the encoder's
 * choices are the same on every platform): the integer part from the highest set
 * bit, the fraction f of the mantissa by log2(1 + f) ~ f (1.3465 - 0.3465 f),
 * within 0.006 bits. */
static uint64_t log2_fixed(uint64_t v)
{
    unsigned hb = 0, step;
    uint64_t f;
    for (step = 32; step > 0; step >>= 1)
        if (v >> (hb + step)) hb += step;
    f = hb >= 16 ? (v >> (hb - 16)) - 65536 : (v << (16 - hb)) - 65536;
    return ((uint64_t)hb << 16) + ((f * (88245 - ((22709 * f) >> 16))) >> 16);
}

#define L3IC_BYTE_COST ((uint64_t)8 << 16)   /* one byte, in the units of log2_fixed */

/* Estimated size of a sub-chunk coding the symbols counted in cum[hi] - cum[lo]
 * (lo = -1: none below), in 1/65536 bits: order-0 entropy, plus ~0.6 byte per
 * distinct symbol for the FSE table and 4 bytes for its mode, length and tail. */
static uint64_t estimate_stream(const context_buffers* buf, int lo, int hi, unsigned alphabet_size)
{
    uint64_t n = 0, sum = 0;
    unsigned s, distinct = 0;
    for (s = 0; s < alphabet_size; s++) {
        uint64_t const c = buf->cum[hi][s] - (lo >= 0 ? buf->cum[lo][s] : 0);
        if (c > 0) { n += c; sum += c * log2_fixed(c); distinct++; }
    }
    if (distinct <= 1) return 2 * L3IC_BYTE_COST;   /* mode byte + EMPTY/CONSTANT */
    return n * log2_fixed(n) - sum + distinct * (L3IC_BYTE_COST * 6 / 10) + 4 * L3IC_BYTE_COST;
}

/* The model (prediction and thresholds) whose CONTEXT chunk is estimated
 * smallest for a channel; buf->cum is rebuilt for each predictor.  (Coding the
 * three best estimates exactly gained 0.1 %: the estimate is good enough.) */
static context_model choose_context(const uint8_t* x, size_t n, size_t width, unsigned alphabet_size,
                                    unsigned s0, context_buffers* buf)
{
    int const top = L3IC_ACTIVITY_BUCKETS - 1, nt = (int)L3IC_N_THRESHOLDS;
    context_model best = {0, 0, 1, {0, 0}}, m = {0, 0, 1, {0, 0}};
    uint64_t best_cost = UINT64_MAX;
    size_t i;
    unsigned p, r, s;
    int j, k;
    best.s0 = m.s0 = s0;
    for (p = 0; p < L3IC_CONTEXT_PREDICTORS; p++) {
        m.predictor = p;
        context_transform(x, n, width, alphabet_size, &m, buf);
        memset(buf->cum, 0, sizeof(buf->cum));
        for (i = 0; i < n; i++) buf->cum[buf->bucket[i]][buf->t[i]]++;
        for (r = 1; r < L3IC_ACTIVITY_BUCKETS; r++)
            for (s = 0; s < alphabet_size; s++) buf->cum[r][s] += buf->cum[r - 1][s];
        /* j, k index context_thresholds; -1 means "no such threshold": (-1, -1) is one
         * stream (only worth its header with prediction), (j, -1) two, (j, k > j) three */
        for (j = p ? -1 : 0; j < nt; j++) {
            for (k = -1; k < nt; k++) {
                int edge[L3IC_CONTEXT_MAX_STREAMS + 1] = {-1};   /* stream e: buckets (edge[e], edge[e + 1]] */
                uint64_t cost = 3 * L3IC_BYTE_COST;   /* s0, predictor, k */
                unsigned e;
                if (k >= 0 && (j < 0 || k <= j)) continue;
                m.k = 1;
                if (j >= 0) edge[m.k++] = context_thresholds[j];
                if (k >= 0) edge[m.k++] = context_thresholds[k];
                edge[m.k] = top;
                for (e = 0; e < m.k; e++) {   /* each stream after the first: a threshold, a count, a length */
                    if (e > 0) m.threshold[e - 1] = (unsigned)edge[e];
                    cost += (e > 0 ? 3 * L3IC_BYTE_COST : 0) + estimate_stream(buf, edge[e], edge[e + 1], alphabet_size);
                }
                if (cost < best_cost) {
                    best_cost = cost;
                    best = m;
                }
            }
        }
    }
    return best;
}

/* Writes the CONTEXT chunk of model m at dst if it is shorter than *len, updating
 * *len and *mode.  @return : L3IC_FSE_OK or an error of encode_plain(). */
static int encode_model(encode_wksp* w, const uint8_t* x, size_t n, size_t width, unsigned alphabet_size,
                        const context_model* m, uint8_t* scratch, context_buffers* buf,
                        uint8_t* dst, uint8_t* mode, size_t* len)
{
    size_t const sub_room = l3ic_fse_raw_size(n, alphabet_size) + L3IC_CONTEXT_MAX_STREAMS;
    size_t count[L3IC_CONTEXT_MAX_STREAMS] = {0}, start[L3IC_CONTEXT_MAX_STREAMS], fill[L3IC_CONTEXT_MAX_STREAMS];
    size_t sub_len[L3IC_CONTEXT_MAX_STREAMS], i, j, pos = 0, used = 0;
    uint8_t sub_mode[L3IC_CONTEXT_MAX_STREAMS];
    /* s0, predictor, k, thresholds, counts and lengths (varints of <= 5 bytes), modes */
    uint8_t head[3 + (L3IC_CONTEXT_MAX_STREAMS - 1) * 11 + L3IC_CONTEXT_MAX_STREAMS];
    int err;

    context_transform(x, n, width, alphabet_size, m, buf);
    for (i = 0; i < n; i++) count[stream_of(buf->bucket[i], m)]++;   /* thresholds <= 16: buckets suffice */
    for (j = 0; j < m->k; j++) { start[j] = fill[j] = j ? start[j - 1] + count[j - 1] : 0; }
    for (i = 0; i < n; i++) buf->split[fill[stream_of(buf->bucket[i], m)]++] = buf->t[i];
    for (j = 0; j < m->k; j++) {
        err = encode_plain(w, buf->split + start[j], count[j], alphabet_size, scratch, buf->sub + used,
                           sub_room - used, &sub_mode[j], &sub_len[j]);
        if (err != L3IC_FSE_OK) return err;
        used += sub_len[j];
    }
    head[pos++] = (uint8_t)m->s0;
    head[pos++] = (uint8_t)m->predictor;
    head[pos++] = (uint8_t)m->k;
    for (j = 0; j + 1 < m->k; j++) head[pos++] = (uint8_t)m->threshold[j];
    for (j = 0; j + 1 < m->k; j++) pos += varint_write(head + pos, count[j]);
    for (j = 0; j < m->k; j++) head[pos++] = sub_mode[j];
    for (j = 0; j + 1 < m->k; j++) pos += varint_write(head + pos, sub_len[j]);
    if (pos + used >= *len) return L3IC_FSE_OK;   /* not shorter */
    memcpy(dst, head, pos);
    memcpy(dst + pos, buf->sub, used);
    *len = pos + used;
    *mode = L3IC_FSE_MODE_CONTEXT;
    return L3IC_FSE_OK;
}

/* Tries the CONTEXT mode on one channel (n >= 3, rows of width) with s0 its
 * most frequent symbol and the model choose_context() estimates best; dst holds
 * the shortest chunk so far (*len bytes) and is overwritten if CONTEXT is shorter. */
static int encode_context(encode_wksp* w, const uint8_t* x, size_t n, size_t width,
                          unsigned alphabet_size, uint8_t* scratch, context_buffers* buf,
                          uint8_t* dst, uint8_t* mode, size_t* len)
{
    size_t count[L3IC_FSE_MAX_ALPHABET] = {0};
    size_t i;
    unsigned s0 = 0;
    context_model m;

    for (i = 0; i < n; i++) count[x[i]]++;
    for (i = 1; i < alphabet_size; i++) if (count[i] > count[s0]) s0 = (unsigned)i;
    m = choose_context(x, n, width, alphabet_size, s0, buf);
    return encode_model(w, x, n, width, alphabet_size, &m, scratch, buf, dst, mode, len);
}

int l3ic_fse_encode_channels(const uint8_t* symbols, size_t n_channels, size_t n_symbols,
                             size_t width, unsigned alphabet_size,
                             uint8_t* dst, size_t dst_capacity,
                             uint8_t* modes, uint32_t* sizes, size_t* dst_written)
{
    int const try_context = width != 0 && n_symbols >= 3;
    encode_wksp* w = NULL;
    uint8_t* scratch = NULL;
    context_buffers* buf = NULL;
    size_t pos = 0, c;
    int err = L3IC_FSE_OK;

    if (!alphabet_ok(alphabet_size) || n_symbols > L3IC_FSE_MAX_SYMBOLS || dst_written == NULL
        || (width != 0 && n_symbols % width != 0)
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
        if (try_context) {
            buf = (context_buffers*)calloc(1, sizeof(*buf));
            if (buf == NULL) { err = L3IC_FSE_ERR_ALLOC; goto done; }
            buf->t = (uint8_t*)malloc(n_symbols);
            buf->bucket = (uint8_t*)malloc(n_symbols);
            buf->split = (uint8_t*)malloc(n_symbols);
            buf->sub = (uint8_t*)malloc(l3ic_fse_raw_size(n_symbols, alphabet_size) + L3IC_CONTEXT_MAX_STREAMS);
            if (!buf->t || !buf->bucket || !buf->split || !buf->sub) { err = L3IC_FSE_ERR_ALLOC; goto done; }
        }
    }

    for (c = 0; c < n_channels; c++) {
        const uint8_t* const src = symbols != NULL ? symbols + c * n_symbols : NULL;   /* NULL: n_symbols == 0 */
        uint8_t* const out = dst != NULL ? dst + pos : NULL;   /* NULL only if dst_capacity == 0 */
        size_t len;
        uint8_t mode;

        err = encode_plain(w, src, n_symbols, alphabet_size, scratch, out, dst_capacity - pos, &mode, &len);
        if (err != L3IC_FSE_OK) goto done;
        if (try_context && mode != L3IC_FSE_MODE_CONSTANT) {
            /* the plain chunk is already at out: a shorter CONTEXT chunk overwrites it */
            err = encode_context(w, src, n_symbols, width, alphabet_size, scratch, buf, out, &mode, &len);
            if (err != L3IC_FSE_OK) goto done;
        }
        modes[c] = mode;
        sizes[c] = (uint32_t)len;   /* len <= raw <= L3IC_FSE_MAX_SYMBOLS */
        pos += len;
    }
    *dst_written = pos;

done:
    if (buf != NULL) {
        free(buf->sub);
        free(buf->split);
        free(buf->bucket);
        free(buf->t);
        free(buf);
    }
    free(scratch);
    free(w);
    return err;
}


/*-*********************************************
*  Decoder
***********************************************/
/* Whether a chunk of `len` bytes can code n symbols in `mode` (rows of width;
 * width 0: CONTEXT is not allowed).
 * @return : L3IC_FSE_OK, L3IC_FSE_ERR_BAD_MODE or L3IC_FSE_ERR_SIZE_MISMATCH. */
static int chunk_fits(unsigned mode, size_t len, size_t n, size_t width, unsigned alphabet_size)
{
    switch (mode) {
    case L3IC_FSE_MODE_FSE:
        if (n < 2) return L3IC_FSE_ERR_BAD_MODE;
        return len >= 2 ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
    case L3IC_FSE_MODE_CONSTANT:
        if (n == 0) return L3IC_FSE_ERR_BAD_MODE;
        return len == 1 ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
    case L3IC_FSE_MODE_RAW:
        if (n == 0) return L3IC_FSE_ERR_BAD_MODE;
        return len == l3ic_fse_raw_size(n, alphabet_size) ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
    case L3IC_FSE_MODE_EMPTY:
        if (n != 0) return L3IC_FSE_ERR_BAD_MODE;
        return len == 0 ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
    case L3IC_FSE_MODE_CONTEXT:
        if (n < 2 || width == 0) return L3IC_FSE_ERR_BAD_MODE;
        return len >= 4 ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
    default:
        return L3IC_FSE_ERR_BAD_MODE;
    }
}

int l3ic_fse_check_layout(size_t src_size, const uint8_t* modes, const uint32_t* sizes,
                          size_t n_channels, size_t n_symbols, size_t width, unsigned alphabet_size,
                          size_t* err_channel)
{
    size_t total = 0, c;

    if (!alphabet_ok(alphabet_size) || n_symbols > L3IC_FSE_MAX_SYMBOLS
        || (width != 0 && n_symbols % width != 0)
        || (n_channels != 0 && (modes == NULL || sizes == NULL)))
        return L3IC_FSE_ERR_ARG;
    for (c = 0; c < n_channels; c++) {
        size_t const len = sizes[c];
        int err = chunk_fits(modes[c], len, n_symbols, width, alphabet_size);
        if (err == L3IC_FSE_OK && len > src_size - total)   /* total <= src_size: no overflow */
            err = L3IC_FSE_ERR_SIZE_MISMATCH;
        if (err != L3IC_FSE_OK) {
            if (err_channel) *err_channel = c;
            return err;
        }
        total += len;
    }
    return total == src_size ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
}

/* What decoding needs beyond the output, allocated on first use. */
typedef struct {
    short ncount[FSE_MAX_SYMBOL_VALUE + 1];
    unsigned wksp[FSE_DECOMPRESS_WKSP_SIZE_U32(FSE_MAX_TABLELOG, FSE_MAX_SYMBOL_VALUE)];
    int bmi2;
    uint8_t* split;   /* n_symbols bytes: a CONTEXT chunk's streams, one after the other */
    uint8_t* t;       /* n_symbols bytes: the coded symbols of a CONTEXT chunk, in raster order */
} decode_wksp;

/* Decodes one FSE chunk of len >= 2 bytes into exactly n >= 2 symbols. */
static int decode_fse(decode_wksp* w, const uint8_t* src, size_t len,
                      uint8_t* out, size_t n, unsigned alphabet_size)
{
    unsigned max_symbol = FSE_MAX_SYMBOL_VALUE, table_log = 0;
    size_t r = FSE_readNCount(w->ncount, &max_symbol, &table_log, src, len);
    uint8_t small[16];

    if (FSE_isError(r) || table_log > FSE_MAX_TABLELOG || r >= len) return L3IC_FSE_ERR_CORRUPT;
    if (max_symbol >= alphabet_size) return L3IC_FSE_ERR_SYMBOL_RANGE;
    if (n < sizeof(small)) {
        /* FSE's decoder forms pointers up to 3 bytes before a too-small dst */
        r = FSE_decompress_wksp_bmi2(small, sizeof(small), src, len, FSE_MAX_TABLELOG, w->wksp, sizeof(w->wksp), w->bmi2);
        if (!FSE_isError(r) && r == n) memcpy(out, small, n);
    } else {
        r = FSE_decompress_wksp_bmi2(out, n, src, len, FSE_MAX_TABLELOG, w->wksp, sizeof(w->wksp), w->bmi2);
    }
    if (FSE_isError(r) || r != n) return L3IC_FSE_ERR_CORRUPT;
    /* Cannot fail after the max_symbol check; cheap enough to keep as a guard. */
    return max_byte(out, n) < alphabet_size ? L3IC_FSE_OK : L3IC_FSE_ERR_SYMBOL_RANGE;
}

/* Decodes a chunk of mode 0..3 whose length chunk_fits() accepted. */
static int decode_plain(decode_wksp* w, unsigned mode, const uint8_t* chunk, size_t len,
                        uint8_t* out, size_t n, unsigned alphabet_size)
{
    switch (mode) {
    case L3IC_FSE_MODE_FSE:
        return decode_fse(w, chunk, len, out, n, alphabet_size);
    case L3IC_FSE_MODE_CONSTANT:
        if (chunk[0] >= alphabet_size) return L3IC_FSE_ERR_SYMBOL_RANGE;
        memset(out, chunk[0], n);
        return L3IC_FSE_OK;
    case L3IC_FSE_MODE_RAW:
        return raw_unpack(out, chunk, n, raw_bits(alphabet_size), alphabet_size);
    default:   /* EMPTY: nothing to write */
        return L3IC_FSE_OK;
    }
}

/* Parses a CONTEXT chunk's header into m, counts and modes/lengths of its k
 * sub-chunks, and checks every field against n, the alphabet and len.
 * @return : L3IC_FSE_OK with *header_len set, or an error code. */
static int parse_context(const uint8_t* chunk, size_t len, size_t n, unsigned alphabet_size, context_model* m,
                         size_t* count, unsigned* mode, size_t* sub_len, size_t* header_len)
{
    size_t pos = 3, total = 0, k, j;
    int err;

    m->s0 = chunk[0];
    m->predictor = chunk[1];
    m->k = chunk[2];
    if (m->s0 >= alphabet_size) return L3IC_FSE_ERR_SYMBOL_RANGE;
    if (m->predictor >= L3IC_CONTEXT_PREDICTORS || m->k < 1 || m->k > L3IC_CONTEXT_MAX_STREAMS)
        return L3IC_FSE_ERR_CORRUPT;
    if (len - pos < m->k - 1) return L3IC_FSE_ERR_CORRUPT;
    for (j = 0; j + 1 < m->k; j++) {
        m->threshold[j] = chunk[pos++];
        if (j > 0 && m->threshold[j] <= m->threshold[j - 1]) return L3IC_FSE_ERR_CORRUPT;
    }
    for (j = 0; j + 1 < m->k; j++) {
        k = varint_read(chunk + pos, len - pos, &count[j]);
        if (k == 0 || count[j] > n - total) return L3IC_FSE_ERR_CORRUPT;
        pos += k;
        total += count[j];
    }
    count[m->k - 1] = n - total;
    if (len - pos < m->k) return L3IC_FSE_ERR_CORRUPT;
    for (j = 0; j < m->k; j++) mode[j] = chunk[pos++];
    for (j = 0; j + 1 < m->k; j++) {
        k = varint_read(chunk + pos, len - pos, &sub_len[j]);
        if (k == 0) return L3IC_FSE_ERR_CORRUPT;
        pos += k;
    }
    for (j = 0, total = 0; j + 1 < m->k; j++) {   /* the sub-chunks fill [pos, len): total <= len - pos */
        if (sub_len[j] > len - pos - total) return L3IC_FSE_ERR_CORRUPT;
        total += sub_len[j];
    }
    sub_len[m->k - 1] = len - pos - total;
    for (j = 0; j < m->k; j++) {   /* modes 0..3 only: a CONTEXT chunk does not nest */
        err = chunk_fits(mode[j], sub_len[j], count[j], 0, alphabet_size);
        if (err != L3IC_FSE_OK) return err;
    }
    *header_len = pos;
    return L3IC_FSE_OK;
}

/* Decodes a CONTEXT chunk (len >= 4) into n symbols in rows of width: decodes
 * its streams into w->split, then rebuilds the raster in order, taking each
 * coded symbol from the stream its activity selects and undoing the prediction. */
static int decode_context(decode_wksp* w, const uint8_t* chunk, size_t len,
                          uint8_t* out, size_t n, size_t width, unsigned alphabet_size)
{
    context_model m;
    size_t count[L3IC_CONTEXT_MAX_STREAMS], sub_len[L3IC_CONTEXT_MAX_STREAMS], next[L3IC_CONTEXT_MAX_STREAMS];
    size_t end[L3IC_CONTEXT_MAX_STREAMS], pos, i, col, j, start = 0;
    unsigned mode[L3IC_CONTEXT_MAX_STREAMS], centre;
    int err = parse_context(chunk, len, n, alphabet_size, &m, count, mode, sub_len, &pos);

    for (j = 0; j < m.k && err == L3IC_FSE_OK; j++) {
        err = decode_plain(w, mode[j], chunk + pos, sub_len[j], w->split + start, count[j], alphabet_size);
        next[j] = start;
        end[j] = start += count[j];
        pos += sub_len[j];
    }
    if (err != L3IC_FSE_OK) return err;
    centre = context_centre(&m, alphabet_size);
    for (i = 0, col = 0; i < n; i++, col = col + 1 == width ? 0 : col + 1) {
        j = stream_of(activity(w->t, i, col, width, centre), &m);
        if (next[j] == end[j]) return L3IC_FSE_ERR_CORRUPT;   /* this stream ran out */
        w->t[i] = w->split[next[j]++];
        out[i] = (uint8_t)(m.predictor ? from_residual(w->t[i], predict(out, i, col, width, &m), alphabet_size)
                                       : w->t[i]);
    }
    return L3IC_FSE_OK;   /* n positions, no stream overrun, counts adding up to n: all used up exactly */
}

int l3ic_fse_decode_channels(const uint8_t* src, size_t src_size,
                             const uint8_t* modes, const uint32_t* sizes,
                             size_t n_channels, size_t n_symbols, size_t width, unsigned alphabet_size,
                             uint8_t* out, size_t* err_channel)
{
    decode_wksp* w = NULL;
    size_t pos = 0, c;
    int err = l3ic_fse_check_layout(src_size, modes, sizes, n_channels, n_symbols, width, alphabet_size, err_channel);

    if (err != L3IC_FSE_OK) return err;
    if ((src == NULL && src_size != 0)
        || (n_symbols != 0 && n_channels > SIZE_MAX / n_symbols)
        || (out == NULL && n_symbols != 0 && n_channels != 0))
        return L3IC_FSE_ERR_ARG;

    for (c = 0; c < n_channels && err == L3IC_FSE_OK; c++) {
        const uint8_t* const chunk = src != NULL ? src + pos : NULL;   /* NULL only if every len is 0 */
        uint8_t* const dst = out != NULL ? out + c * n_symbols : NULL;   /* NULL only if n_symbols is 0 */
        unsigned const mode = modes[c];
        if ((mode == L3IC_FSE_MODE_FSE || mode == L3IC_FSE_MODE_CONTEXT) && w == NULL) {
            w = (decode_wksp*)calloc(1, sizeof(*w));
            if (w == NULL) { err = L3IC_FSE_ERR_ALLOC; break; }
#if DYNAMIC_BMI2
            w->bmi2 = ZSTD_cpuid_bmi2(ZSTD_cpuid());
#endif
        }
        if (mode == L3IC_FSE_MODE_CONTEXT) {
            if (w->split == NULL) {
                w->split = (uint8_t*)malloc(n_symbols);
                w->t = (uint8_t*)malloc(n_symbols);
                if (w->split == NULL || w->t == NULL) { err = L3IC_FSE_ERR_ALLOC; break; }
            }
            err = decode_context(w, chunk, sizes[c], dst, n_symbols, width, alphabet_size);
        } else {
            err = decode_plain(w, mode, chunk, sizes[c], dst, n_symbols, alphabet_size);
        }
        if (err != L3IC_FSE_OK && err_channel) *err_channel = c;
        pos += sizes[c];
    }
    if (w != NULL) {
        free(w->split);
        free(w->t);
    }
    free(w);
    return err;
}


/*-*********************************************
*  Static tables (mode 5, bitstream version 3)
***********************************************/
struct l3ic_fse_tables {
    unsigned n_tables;
    unsigned alphabet_size;
    unsigned table_log;
    size_t ctable_u32;     /* FSE_CTable entries per CTable */
    size_t dtable_u32;     /* FSE_DTable entries per DTable */
    FSE_CTable* ctables;   /* n_tables CTables, back to back */
    FSE_DTable* dtables;   /* n_tables DTables, back to back */
    /* per table: FSE_initCState()'s view of its CTable (the stateTable and symbolTT
     * an FSE_CState_t points at), and what FSE_initDState() puts in DState.table */
    const void* state_table[L3IC_FSE_MAX_TABLES];
    const void* symbol_tt[L3IC_FSE_MAX_TABLES];
    const void* decode_table[L3IC_FSE_MAX_TABLES];
};

/* The workspace either table builder needs, for the largest alphabet and tableLog. */
typedef union {
    unsigned c[L3IC_BUILD_CTABLE_WKSP_U32];
    unsigned d[FSE_BUILD_DTABLE_WKSP_SIZE_U32(FSE_MAX_TABLELOG, FSE_MAX_SYMBOL_VALUE)];
} build_wksp;

int l3ic_fse_tables_create(const int16_t* counts, unsigned n_tables, unsigned alphabet_size,
                           unsigned table_log, l3ic_fse_tables** out)
{
    l3ic_fse_tables* t;
    build_wksp* wksp;
    short norm[FSE_MAX_SYMBOL_VALUE + 1];
    unsigned k, s;
    int err = L3IC_FSE_OK;

    if (counts == NULL || out == NULL || n_tables < 1 || n_tables > L3IC_FSE_MAX_TABLES || !alphabet_ok(alphabet_size))
        return L3IC_FSE_ERR_ARG;
    if (table_log < L3IC_FSE_MIN_TABLELOG || table_log > L3IC_FSE_MAX_TABLELOG) return L3IC_FSE_ERR_BAD_TABLE;
    for (k = 0; k < n_tables; k++) {   /* validate every row before building anything */
        const int16_t* const row = counts + (size_t)k * alphabet_size;
        unsigned long total = 0;
        for (s = 0; s < alphabet_size; s++) {
            if (row[s] < 1) return L3IC_FSE_ERR_BAD_TABLE;   /* a 0 would make the symbol uncodable */
            total += (unsigned long)row[s];   /* <= 256 * 32767: no overflow */
        }
        if (total != (1ul << table_log)) return L3IC_FSE_ERR_BAD_TABLE;
    }

    t = (l3ic_fse_tables*)calloc(1, sizeof(*t));
    wksp = (build_wksp*)malloc(sizeof(*wksp));
    if (t == NULL || wksp == NULL) { err = L3IC_FSE_ERR_ALLOC; goto done; }
    t->n_tables = n_tables;
    t->alphabet_size = alphabet_size;
    t->table_log = table_log;
    t->ctable_u32 = FSE_CTABLE_SIZE_U32(table_log, alphabet_size - 1);
    t->dtable_u32 = FSE_DTABLE_SIZE_U32(table_log);
    t->ctables = (FSE_CTable*)malloc(n_tables * t->ctable_u32 * sizeof(FSE_CTable));
    t->dtables = (FSE_DTable*)malloc(n_tables * t->dtable_u32 * sizeof(FSE_DTable));
    if (t->ctables == NULL || t->dtables == NULL) { err = L3IC_FSE_ERR_ALLOC; goto done; }
    for (k = 0; k < n_tables; k++) {
        FSE_CTable* const ct = t->ctables + k * t->ctable_u32;
        FSE_DTable* const dt = t->dtables + k * t->dtable_u32;
        FSE_CState_t view;
        size_t r;
        for (s = 0; s < alphabet_size; s++) norm[s] = (short)counts[(size_t)k * alphabet_size + s];
        r = FSE_buildCTable_wksp(ct, norm, alphabet_size - 1, table_log, wksp->c, sizeof(wksp->c));
        if (!FSE_isError(r)) r = FSE_buildDTable_wksp(dt, norm, alphabet_size - 1, table_log, wksp->d, sizeof(wksp->d));
        if (FSE_isError(r)) { err = L3IC_FSE_ERR_INTERNAL; goto done; }   /* the counts were checked: a bug */
        FSE_initCState(&view, ct);
        t->state_table[k] = view.stateTable;
        t->symbol_tt[k] = view.symbolTT;
        t->decode_table[k] = dt + 1;   /* as FSE_initDState() sets DState.table */
    }
    *out = t;
    t = NULL;

done:
    free(wksp);
    l3ic_fse_tables_free(t);
    return err;
}

void l3ic_fse_tables_free(l3ic_fse_tables* tables)
{
    if (tables == NULL) return;
    free(tables->ctables);
    free(tables->dtables);
    free(tables);
}

size_t l3ic_fse_static_bound(size_t n_channels, size_t n_symbols, unsigned alphabet_size)
{
    return l3ic_fse_encode_bound(n_channels, n_symbols, alphabet_size);
}

/* Codes n >= 1 symbols (every one < alphabet_size, every index < n_tables) as a
 * STATIC chunk into buf (capacity > sizeof(size_t) bytes).
 * @return : the chunk length, or 0 if it needs more than capacity - sizeof(size_t) - 1 bytes. */
static size_t encode_static_chunk(const l3ic_fse_tables* t, const uint8_t* sym, const uint8_t* idx, size_t n,
                                  uint8_t* buf, size_t capacity)
{
    BIT_CStream_t bits;
    FSE_CState_t state;
    size_t i;

    if (ERR_isError(BIT_initCStream(&bits, buf, capacity))) return 0;
    FSE_initCState(&state, t->ctables + idx[n - 1] * t->ctable_u32);   /* value 1 << tableLog: decoder state 0 */
    for (i = n; i-- > 0;) {
        state.stateTable = t->state_table[idx[i]];
        state.symbolTT = t->symbol_tt[idx[i]];
        FSE_encodeSymbol(&bits, &state, sym[i]);   /* at most tableLog bits */
        BIT_flushBits(&bits);   /* clamps at the end of buf; overflow shows in BIT_closeCStream() */
    }
    FSE_flushCState(&bits, &state);
    return BIT_closeCStream(&bits);   /* 0 on overflow */
}

/* Decodes a STATIC chunk of len >= 1 bytes into n >= 1 symbols (every index < n_tables).
 * Reads only chunk[0 .. len): zstd's BIT_ functions clamp their pointers, and after an
 * overflow (more bits asked for than the chunk holds) read no memory at all.
 * @return : L3IC_FSE_OK or L3IC_FSE_ERR_CORRUPT. */
static int decode_static_chunk(const l3ic_fse_tables* t, const uint8_t* chunk, size_t len,
                               const uint8_t* idx, uint8_t* out, size_t n)
{
    BIT_DStream_t bits;
    FSE_DState_t state;
    size_t i;

    if (ERR_isError(BIT_initDStream(&bits, chunk, len))) return L3IC_FSE_ERR_CORRUPT;   /* e.g. last byte 0 */
    FSE_initDState(&state, &bits, t->dtables + idx[0] * t->dtable_u32);   /* state < 1 << tableLog */
    for (i = 0; i < n; i++) {
        /* Every entry's newState + (any nbBits-bit value) is < 1 << tableLog, so the
         * state stays inside the table whatever the bits are. */
        state.table = t->decode_table[idx[i]];
        out[i] = FSE_decodeSymbol(&state, &bits);
        if (BIT_reloadDStream(&bits) == BIT_DStream_overflow) return L3IC_FSE_ERR_CORRUPT;
    }
    if (!BIT_endOfDStream(&bits) || state.state != 0) return L3IC_FSE_ERR_CORRUPT;
    return L3IC_FSE_OK;
}

int l3ic_fse_encode_static(const l3ic_fse_tables* tables, const uint8_t* symbols, const uint8_t* table_idx,
                           size_t n_channels, size_t n_symbols, uint8_t* dst, size_t dst_capacity,
                           uint8_t* modes, uint32_t* sizes, size_t* dst_written)
{
    uint8_t* scratch = NULL;
    size_t raw, scratch_size = 0, pos = 0, c;
    unsigned b;

    if (tables == NULL || n_symbols > L3IC_FSE_MAX_SYMBOLS || dst_written == NULL
        || (n_channels != 0 && (modes == NULL || sizes == NULL))
        || (n_symbols != 0 && n_channels > SIZE_MAX / n_symbols)
        || (n_channels != 0 && n_symbols != 0 && (symbols == NULL || table_idx == NULL))
        || (dst == NULL && dst_capacity != 0))
        return L3IC_FSE_ERR_ARG;
    *dst_written = 0;
    raw = l3ic_fse_raw_size(n_symbols, tables->alphabet_size);
    b = raw_bits(tables->alphabet_size);
    if (n_symbols >= 2 && n_channels != 0) {
        /* A STATIC chunk is kept only if shorter than RAW: room for raw bytes, plus the
         * bit container that BIT_flushBits() writes whole, is enough to see that. */
        scratch_size = raw + 2 * sizeof(size_t);
        scratch = (uint8_t*)malloc(scratch_size);
        if (scratch == NULL) return L3IC_FSE_ERR_ALLOC;
    }

    for (c = 0; c < n_channels; c++) {
        const uint8_t* const src = symbols != NULL ? symbols + c * n_symbols : NULL;   /* NULL: n_symbols == 0 */
        const uint8_t* const idx = table_idx != NULL ? table_idx + c * n_symbols : NULL;
        uint8_t* const out = dst != NULL ? dst + pos : NULL;   /* NULL only if dst_capacity == 0 */
        size_t const room = dst_capacity - pos;
        size_t len = 0, i;
        uint8_t mode;
        int constant = 1;

        if (n_symbols == 0) {
            mode = L3IC_FSE_MODE_EMPTY;
        } else {
            if (max_byte(src, n_symbols) >= tables->alphabet_size) { free(scratch); return L3IC_FSE_ERR_SYMBOL_RANGE; }
            if (max_byte(idx, n_symbols) >= tables->n_tables) { free(scratch); return L3IC_FSE_ERR_TABLE_INDEX; }
            for (i = 1; i < n_symbols && constant; i++) constant = src[i] == src[0];
            if (constant) {   /* 1 byte: a STATIC chunk is never shorter */
                mode = L3IC_FSE_MODE_CONSTANT;
                len = 1;
                if (room < len) { free(scratch); return L3IC_FSE_ERR_DST_TOO_SMALL; }
                out[0] = src[0];
            } else {
                len = encode_static_chunk(tables, src, idx, n_symbols, scratch, scratch_size);
                if (len != 0 && len < raw) {
                    mode = L3IC_FSE_MODE_STATIC;
                    if (room < len) { free(scratch); return L3IC_FSE_ERR_DST_TOO_SMALL; }
                    memcpy(out, scratch, len);
                } else {
                    mode = L3IC_FSE_MODE_RAW;
                    len = raw;
                    if (room < len) { free(scratch); return L3IC_FSE_ERR_DST_TOO_SMALL; }
                    raw_pack(out, src, n_symbols, b);
                }
            }
        }
        modes[c] = mode;
        sizes[c] = (uint32_t)len;   /* len <= raw <= L3IC_FSE_MAX_SYMBOLS */
        pos += len;
    }
    *dst_written = pos;
    free(scratch);
    return L3IC_FSE_OK;
}

/* Whether a chunk of `len` bytes can code n symbols in `mode` with static tables.
 * @return : L3IC_FSE_OK, L3IC_FSE_ERR_BAD_MODE or L3IC_FSE_ERR_SIZE_MISMATCH. */
static int static_chunk_fits(unsigned mode, size_t len, size_t n, unsigned alphabet_size)
{
    switch (mode) {
    case L3IC_FSE_MODE_STATIC:
        if (n == 0) return L3IC_FSE_ERR_BAD_MODE;
        return len >= 1 ? L3IC_FSE_OK : L3IC_FSE_ERR_SIZE_MISMATCH;
    case L3IC_FSE_MODE_CONSTANT:
    case L3IC_FSE_MODE_RAW:
    case L3IC_FSE_MODE_EMPTY:
        return chunk_fits(mode, len, n, 0, alphabet_size);
    default:   /* FSE and CONTEXT carry their own tables: not in static streams */
        return L3IC_FSE_ERR_BAD_MODE;
    }
}

int l3ic_fse_decode_static(const l3ic_fse_tables* tables, const uint8_t* src, size_t src_size,
                           const uint8_t* modes, const uint32_t* sizes, const uint8_t* table_idx,
                           size_t n_channels, size_t n_symbols, uint8_t* out, size_t* err_channel)
{
    size_t total = 0, pos = 0, c;
    int err = L3IC_FSE_OK;

    if (tables == NULL || n_symbols > L3IC_FSE_MAX_SYMBOLS
        || (n_channels != 0 && (modes == NULL || sizes == NULL))
        || (src == NULL && src_size != 0)
        || (n_symbols != 0 && n_channels > SIZE_MAX / n_symbols)
        || (n_symbols != 0 && n_channels != 0 && (out == NULL || table_idx == NULL)))
        return L3IC_FSE_ERR_ARG;
    /* the layout, as l3ic_fse_check_layout() does */
    for (c = 0; c < n_channels; c++) {
        size_t const len = sizes[c];
        err = static_chunk_fits(modes[c], len, n_symbols, tables->alphabet_size);
        if (err == L3IC_FSE_OK && len > src_size - total)   /* total <= src_size: no overflow */
            err = L3IC_FSE_ERR_SIZE_MISMATCH;
        if (err != L3IC_FSE_OK) {
            if (err_channel) *err_channel = c;
            return err;
        }
        total += len;
    }
    if (total != src_size) return L3IC_FSE_ERR_SIZE_MISMATCH;
    /* the table indices */
    for (c = 0; c < n_channels && n_symbols != 0; c++) {
        if (max_byte(table_idx + c * n_symbols, n_symbols) >= tables->n_tables) {
            if (err_channel) *err_channel = c;
            return L3IC_FSE_ERR_TABLE_INDEX;
        }
    }

    for (c = 0; c < n_channels && err == L3IC_FSE_OK; c++) {
        const uint8_t* const chunk = src != NULL ? src + pos : NULL;   /* NULL only if every len is 0 */
        uint8_t* const dst = out != NULL ? out + c * n_symbols : NULL;   /* NULL only if n_symbols is 0 */
        unsigned const mode = modes[c];
        if (mode == L3IC_FSE_MODE_STATIC)
            err = decode_static_chunk(tables, chunk, sizes[c], table_idx + c * n_symbols, dst, n_symbols);
        else   /* CONSTANT, RAW, EMPTY: decode_plain() needs no workspace for these */
            err = decode_plain(NULL, mode, chunk, sizes[c], dst, n_symbols, tables->alphabet_size);
        if (err != L3IC_FSE_OK && err_channel) *err_channel = c;
        pos += sizes[c];
    }
    return err;
}
