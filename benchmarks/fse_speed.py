"""Speed and size of the FSE channel coder: ``python -m benchmarks.fse_speed``.

Codes synthetic latents (64 channels of Laplacian-ish symbols over 32 values, a different
spread per channel, as the real models produce; "clustered": the same values in blobs on a
zero background, as real latents look) with ``l3ic.fse`` and prints, per data set,
encode and decode throughput in MB/s of symbols (1 symbol = 1 byte; median of ``--runs``
runs, time.perf_counter), the coded size in bits per symbol, and the size over the
empirical entropy of the channels (each channel's own order-0 entropy, the bound for a
coder that codes channels independently, symbol by symbol).  "FSE 1-D" codes each channel
as a sequence (``width`` 0: format version 1's modes); "FSE 2-D" as a raster, which lets
the CONTEXT mode use neighbours and go below that bound on clustered data.  zstandard at
level 3 on the same bytes, as one frame, is a sanity reference for speed and size.
"""
import argparse
import statistics
import time

import numpy as np
import zstandard

from l3ic import fse

ALPHABET = 32
DATASETS = (("64 x 96x64", 64, 64, 96, False), ("64 x 96x64 clustered", 64, 64, 96, True),
            ("64 x 1024x1024", 64, 1024, 1024, False), ("64 x 1024x1024 clustered", 64, 1024, 1024, True))


def latent(n_channels, h, w, clustered, seed=0):
    """(n_channels, h * w) uint8: rounded Laplacian values centred in the codebook, scale
    growing from 0.2 (nearly constant) to 4 across channels; if ``clustered``, only in
    blobs of 8 x 8 cells covering a third of the raster, the centre elsewhere."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.2, 4.0, n_channels)[:, None, None]
    values = np.rint(rng.laplace(0.0, 1.0, (n_channels, h, w)) * scales) + ALPHABET // 2
    if clustered:
        blobs = rng.random((n_channels, h // 8 + 1, w // 8 + 1)) < 1 / 3
        values = np.where(np.repeat(np.repeat(blobs, 8, axis=1), 8, axis=2)[:, :h, :w], values, ALPHABET // 2)
    return np.clip(values, 0, ALPHABET - 1).astype(np.uint8).reshape(n_channels, h * w)


def entropy_bytes(symbols):
    """Sum over channels of each channel's empirical order-0 entropy, in bytes."""
    total = 0.0
    for row in symbols:
        p = np.bincount(row, minlength=256)
        p = p[p > 0] / row.size
        total += float(-(p * np.log2(p)).sum()) * row.size / 8
    return total


def median_seconds(function, runs):
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(symbols, width, runs):
    """{coder: (encode s, decode s, coded bytes)} after checking that all round-trip."""
    n_channels, n_symbols = symbols.shape
    results = {}

    for coder, w in (("FSE 1-D", 0), ("FSE 2-D", width)):
        t_enc, enc = median_seconds(lambda: fse.encode_channels(symbols, ALPHABET, w), runs)
        t_dec, out = median_seconds(lambda: fse.decode_channels(enc.payload, enc.modes, enc.sizes,
                                                                n_symbols, ALPHABET, w), runs)
        assert np.array_equal(out, symbols)
        results[coder] = (t_enc, t_dec, len(enc.payload))

    data = symbols.tobytes()
    compressor, decompressor = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    t_enc, frame = median_seconds(lambda: compressor.compress(data), runs)
    t_dec, back = median_seconds(lambda: decompressor.decompress(frame), runs)
    assert back == data
    results["zstd -3"] = (t_enc, t_dec, len(frame))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median; default 5)")
    parser.add_argument("--quick", action="store_true", help="only the small data sets")
    args = parser.parse_args(argv)

    header = "%-26s %-9s %12s %12s %12s %13s" % ("data", "coder", "encode MB/s", "decode MB/s",
                                                "bits/symbol", "size/entropy")
    print("FSE channel coder, %d-symbol alphabet; median of %d runs" % (ALPHABET, args.runs))
    print(header)
    print("-" * len(header))
    for name, n_channels, h, w, clustered in DATASETS[:2] if args.quick else DATASETS:
        symbols = latent(n_channels, h, w, clustered)
        bound = entropy_bytes(symbols)
        for i, (coder, (t_enc, t_dec, size)) in enumerate(measure(symbols, w, args.runs).items()):
            print("%-26s %-9s %12.0f %12.0f %12.3f %13.4f" % (
                name if i == 0 else "", coder, symbols.nbytes / t_enc / 1e6, symbols.nbytes / t_dec / 1e6,
                8.0 * size / symbols.size, size / bound))
    print("(entropy: sum of each channel's empirical order-0 entropy; 1 symbol = 1 byte)")


if __name__ == "__main__":
    main()
