/*
 * l3ic_wasm.c - the browser's entropy decoder: l3ic's own FSE glue (csrc/fse/l3ic_fse.c, which
 * #includes zstd's pinned amalgamation zstd.c) compiled to WebAssembly, plus the two things the
 * browser has no other way to do exactly as the Python runtime does: zstd decompression of
 * side-data records, bounded like container._unzstd, and the glue's limits as numbers.
 *
 * Built by web/build_wasm.py.  Including the glue (not a copy of it) keeps one implementation:
 * every check the C glue makes on hostile chunks runs in the browser unchanged.  WebAssembly
 * itself bounds every memory access to the module's own memory, which the build caps, so a
 * bug here can trap (a JavaScript exception) but never touch the page.
 */
#include "l3ic_fse.c"

/* The glue's limits, for the JavaScript side's argument checks: 0 max symbols per channel,
 * 1 max alphabet, 2 max tables, 3 max tableLog; -1 for anything else. */
long long l3ic_wasm_limit(int which)
{
    switch (which) {
    case 0: return L3IC_FSE_MAX_SYMBOLS;
    case 1: return L3IC_FSE_MAX_ALPHABET;
    case 2: return L3IC_FSE_MAX_TABLES;
    case 3: return L3IC_FSE_MAX_TABLELOG;
    default: return -1;
    }
}

/* Decompresses the zstd stream src[0 .. src_size) into dst[0 .. capacity), across frames, and
 * stops once dst is full: what python-zstandard's stream_reader(read_across_frames=True)
 * .read(capacity) gives, so a record cannot expand past what its header declared (the caller
 * passes declared length + 1 and requires exactly the declared length).
 * @return : 0 with *written set (a stream that ends mid-frame is not an error here: the
 *           length check catches it, as in Python), or a zstd error code (ZSTD_ErrorCode,
 *           > 0; l3ic_wasm_zstd_error() names it), or -1 when out of memory. */
int l3ic_wasm_unzstd(const uint8_t* src, size_t src_size, uint8_t* dst, size_t capacity, size_t* written)
{
    ZSTD_DStream* const stream = ZSTD_createDStream();
    ZSTD_inBuffer in = { src, src_size, 0 };
    ZSTD_outBuffer out = { dst, capacity, 0 };
    int code = 0;

    if (stream == NULL) return -1;
    while (in.pos < in.size && out.pos < out.size) {
        size_t const r = ZSTD_decompressStream(stream, &out, &in);
        if (ZSTD_isError(r)) { code = (int)ZSTD_getErrorCode(r); break; }
    }
    ZSTD_freeDStream(stream);
    *written = out.pos;
    return code;
}

/* The English name of a zstd error code (a static string). */
const char* l3ic_wasm_zstd_error(int code)
{
    return ZSTD_getErrorString((ZSTD_ErrorCode)code);
}
