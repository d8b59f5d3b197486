"""A short, fixed-seed run of the fuzz harness (benchmarks/fuzz.py) over each target, and checks of the harness."""
import os
import subprocess
import sys

import pytest

from benchmarks import fuzz
from conftest import REPO


def _versions(seeds):
    from l3ic import container
    return sorted({container.L3icFile.parse(s).version for s in seeds})


def _has_hyperprior_model():
    from l3ic.model import Model
    return Model("medium", "cpu").has_hyperprior


@pytest.mark.parametrize("target,iterations", [("container", 4000), ("fse", 6000), ("decode", 1500)])
def test_fixed_seed_fuzz_finds_nothing(target, iterations, tmp_path):
    stats = fuzz.fuzz_inprocess(target, iterations=iterations, seed=1234, crashes=str(tmp_path))
    assert stats.inputs == iterations
    assert stats.findings == 0, "findings saved in %s: %s" % (tmp_path, sorted(stats.unique))
    assert stats.accepted > 0 and stats.corpus > len(fuzz.make_target(target).seeds())  # it got somewhere
    if target == "container":  # the full entropy decode ran on mutated files of every version
        versions = (1, 2, 3) if _has_hyperprior_model() else (1, 2)
        assert all(stats.paths.get("v%d-decoded" % v, 0) > 0 for v in versions), stats.paths
    if target == "fse":  # STATIC chunks were decoded from hostile layouts and round-tripped
        for path in ("static-decoded-STATIC", "static-decoded-RAW", "static-decoded-CONSTANT", "static-encoded-STATIC"):
            assert stats.paths.get(path, 0) > 0, (path, stats.paths)
        assert stats.paths["static-decode"] > stats.paths["static-decoded"]  # and hostile ones were refused


def test_seeds_cover_format_3_and_the_older_formats():
    seeds = fuzz.make_target("container").seeds()
    assert _versions(seeds) == ([1, 2, 3] if _has_hyperprior_model() else [1, 2])
    from l3ic import container
    tiled = [container.L3icFile.parse(s).header for s in seeds if container.L3icFile.parse(s).header.n_tiles > 1]
    assert tiled and any(h.latent_h % h.tile_h and h.latent_w % h.tile_w for h in tiled)  # ragged edge tiles
    flags = [container.L3icFile.parse(s).header.flags for s in seeds]
    assert container.FLAG_LOSSLESS in flags and any(f & container.FLAG_MARGIN for f in flags)  # tiny images both ways
    for seed in seeds:  # every seed runs clean through every l3ic target
        for name in ("container", "decode"):
            fuzz.make_target(name).run(seed)


def test_static_seeds_decode_and_use_the_model_tables():
    from l3ic import fse
    target = fuzz.make_target("fse")
    if _has_hyperprior_model():
        from l3ic.model import Model
        em = Model("medium", "cpu").entropy_model
        assert [(t.n_tables, t.alphabet_size) for t in target.tables[:2]] == \
            [(em.latent_tables.n_tables, em.latent_tables.alphabet_size), (em.z_tables.n_tables, em.z_tables.alphabet_size)]
    for seed in target.seeds():
        target.run(seed)  # the seeds are valid: nothing raised, not even an allowed error
    assert target.paths["static-decoded"] == target.paths["static-decode"] > 0
    assert target.paths["static-decoded-STATIC"] and target.paths["static-roundtrip"]
    assert len(target.tables) >= 4 and all(isinstance(t, fse.StaticTables) for t in target.tables)


def test_fix_crcs_gets_mutations_past_the_checksums():
    from l3ic import container
    from l3ic.errors import FormatError
    seeds = fuzz.l3ic_seeds()
    for seed in seeds:
        assert fuzz.fix_crcs(seed) == seed
        parsed = container.L3icFile.parse(seed)
        damaged = bytearray(seed)
        if parsed.header.flags & container.FLAG_LOSSLESS:  # no chunks: the pixels are the last side-data record
            damaged[-1] ^= 0x55
            with pytest.raises(FormatError, match="checksum"):
                container.L3icFile.parse(bytes(damaged)).side_data
            try:  # past the checksum, the damaged record is read (and may fail to decompress)
                container.L3icFile.parse(fuzz.fix_crcs(bytes(damaged))).side_data
            except FormatError as e:
                assert "checksum" not in str(e)
            continue
        last_tile = parsed.header.n_tiles - 1
        last_chunks = parsed.tile_chunks(last_tile).payload  # stored last of all chunks, before any side data
        damaged[bytes(seed).rfind(last_chunks) + len(last_chunks) - 1] ^= 0x55  # the last byte of the last chunk
        with pytest.raises(FormatError, match="checksum mismatch in tile %d" % last_tile):
            container.L3icFile.parse(bytes(damaged)).tile_chunks(last_tile)
        container.L3icFile.parse(fuzz.fix_crcs(bytes(damaged))).tile_chunks(last_tile)
    v3 = [s for s in seeds if s[4] == 3]
    if v3:  # format 3: the ẑ chunk comes first, after 3 more header bytes
        parsed = container.L3icFile.parse(v3[0])
        damaged = bytearray(v3[0])
        damaged[bytes(v3[0]).find(parsed.z_chunks().payload)] ^= 0x01  # the ẑ chunk (the first)
        with pytest.raises(FormatError, match="checksum mismatch in z channel 0"):
            container.L3icFile.parse(bytes(damaged)).z_chunks()
        container.L3icFile.parse(fuzz.fix_crcs(bytes(damaged))).z_chunks()
    assert fuzz.fix_crcs(b"L3IC") == b"L3IC"


def test_a_non_allowed_exception_is_a_finding(tmp_path):
    stats = fuzz.fuzz_inprocess("_raise", iterations=50, seed=1, crashes=str(tmp_path))
    assert stats.findings > 0 and stats.unique == {"IndexError@fuzz.py:%d" % _raise_line()}
    saved = [n for n in os.listdir(str(tmp_path)) if n.endswith(".txt")]
    assert saved and "a planted bug" in open(os.path.join(str(tmp_path), saved[0])).read()


def _raise_line():
    import inspect
    lines, first = inspect.getsourcelines(fuzz.RaiseTarget.run)
    return first + next(i for i, line in enumerate(lines) if "raise IndexError" in line)


def test_hard_crashes_are_caught_in_a_child_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.fuzz", "--target", "_abort", "--seconds", "3",
                             "--engine", "builtin", "--crashes", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "0 findings (Python exceptions)" in result.stdout and " 0 crashes" not in result.stdout
    saved = [n for n in os.listdir(str(tmp_path)) if n.endswith(".bin")]
    assert saved and all(open(os.path.join(str(tmp_path), n), "rb").read().startswith(b"KILL") for n in saved)
