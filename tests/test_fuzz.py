"""A short, fixed-seed run of the fuzz harness (benchmarks/fuzz.py) over each target, and checks of the harness."""
import os
import subprocess
import sys

import pytest

from benchmarks import fuzz
from conftest import REPO


@pytest.mark.parametrize("target,iterations", [("container", 4000), ("fse", 6000), ("decode", 1500)])
def test_fixed_seed_fuzz_finds_nothing(target, iterations, tmp_path):
    stats = fuzz.fuzz_inprocess(target, iterations=iterations, seed=1234, crashes=str(tmp_path))
    assert stats.inputs == iterations
    assert stats.findings == 0, "findings saved in %s: %s" % (tmp_path, sorted(stats.unique))
    assert stats.accepted > 0 and stats.corpus > len(fuzz.make_target(target).seeds())  # it got somewhere


def test_fix_crcs_gets_mutations_past_the_checksums():
    from runtime import container
    from runtime.errors import FormatError
    seed = fuzz._l3ic_seeds()[0]
    damaged = bytearray(seed)
    damaged[-3] ^= 0x55  # in the last chunk
    with pytest.raises(FormatError, match="checksum mismatch in tile 0"):
        container.L3icFile.parse(bytes(damaged)).tile_chunks(0)
    container.L3icFile.parse(fuzz.fix_crcs(bytes(damaged))).tile_chunks(0)
    assert fuzz.fix_crcs(seed) == seed and fuzz.fix_crcs(b"L3IC") == b"L3IC"


def test_hard_crashes_are_caught_in_a_child_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.fuzz", "--target", "_abort", "--seconds", "3",
                             "--engine", "builtin", "--crashes", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "0 findings (Python exceptions)" in result.stdout and " 0 crashes" not in result.stdout
    saved = [n for n in os.listdir(str(tmp_path)) if n.endswith(".bin")]
    assert saved and all(open(os.path.join(str(tmp_path), n), "rb").read().startswith(b"KILL") for n in saved)
