"""benchmarks.flat: the diagnosis of flat regions measures what files decode to."""
import numpy as np
from PIL import Image

from benchmarks import flat
from l3ic import Codec
from l3ic.image import psnr
from test_hyperprior import smooth_photo


def test_the_rounded_decode_is_the_files_and_flat_latents_round_to_zero(tmp_path, capsys):
    codec = Codec("high", "cpu", threads=1)
    rgb = smooth_photo(128, 192)
    row = flat.measure(codec, rgb, 100, [0, 8])
    data = codec.encode(rgb, quality=100)
    assert abs(row[4] - psnr(rgb, codec.decode(data))) < 0.01  # rounded: exactly what the file decodes to
    assert abs(row[6] - row[4]) < 0.01  # raising by 0, unclipped: the same (nothing clips at q 100 here)
    assert row[0] > 0.5 and row[1] > 0.5  # a smooth photo: mostly flat blocks, whose gained latents round to 0
    assert row[5] > row[4] and row[3] < row[2]  # unrounded decodes better, in flat areas too
    assert row[8] > row[4] and row[9] > row[7]  # finer steps decode better and need larger symbols
    header, z, latents, top = flat.rate_parts(data)
    assert header + z + latents == len(data) and 0 < top <= latents and z > 0 and header > 57  # every byte counted
    Image.fromarray(rgb).save(tmp_path / "smooth.png")
    assert flat.main(["--images", str(tmp_path), "--holdout", "0", "--holdout-smooth", "1", "--raise", "8",
                      "--rate-quality", "0"]) == 0
    out = capsys.readouterr().out
    assert "| smooth.png | " in out and "Where the bytes go at q 0 (low)" in out
