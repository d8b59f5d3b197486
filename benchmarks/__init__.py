"""l3ic benchmarks: speed, rate-distortion and comparisons with other codecs."""
