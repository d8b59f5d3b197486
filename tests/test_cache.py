"""The per-user start-up cache (l3ic.cache): verified model hashes and ONNX Runtime's optimised graphs save work
without ever changing what a file decodes to, and a damaged model or cache entry is still caught."""
import os
import shutil

import numpy as np
import pytest

from conftest import REPO, photo_like
from l3ic import Codec, cache, model as models
from l3ic.errors import ModelError


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("L3IC_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def coded():
    return Codec("medium", "cpu").encode(photo_like(48, 64))


def test_a_second_run_loads_the_optimised_graph_and_decodes_the_same_pixels(cache_dir, coded, monkeypatch):
    first = Codec("medium", "cpu").decode(coded)
    graphs = os.listdir(cache_dir / "ort")
    assert len(graphs) == 1 and graphs[0].endswith(".onnx")  # the decoder's, the only network a decode loads
    assert len(os.listdir(cache_dir / "verified")) == 2  # decoder.onnx and entropy_model.npz
    monkeypatch.setattr(models, "file_sha256", lambda path: pytest.fail("hashed %s again" % path))
    again = Codec("medium", "cpu")
    assert np.array_equal(again.decode(coded), first)
    assert not (set(os.listdir(cache_dir / "ort")) - set(graphs))


def test_a_changed_model_file_is_hashed_again_and_refused(cache_dir, coded, tmp_path):
    folder = tmp_path / "medium"
    shutil.copytree(os.path.join(REPO, "models", "medium"), str(folder))
    Codec(str(folder), "cpu").decode(coded)  # verified and cached
    path = folder / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    os.utime(str(path), ns=(1, 1))
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the sha256"):
        Codec(str(folder), "cpu").decode(coded)


def test_a_damaged_cache_entry_is_replaced(cache_dir, coded):
    want = Codec("medium", "cpu").decode(coded)
    (graph,) = (cache_dir / "ort").iterdir()
    graph.write_bytes(b"not an onnx graph")
    assert np.array_equal(Codec("medium", "cpu").decode(coded), want)
    assert graph.read_bytes()[:20] != b"not an onnx graph"[:20]


def test_the_cache_can_be_off(tmp_path, monkeypatch, coded):
    monkeypatch.setenv("L3IC_CACHE", cache.OFF)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.folder() is None
    Codec("medium", "cpu").decode(coded)
    assert os.listdir(tmp_path) == []


def test_an_unwritable_cache_costs_nothing_but_time(tmp_path, monkeypatch, coded):
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    monkeypatch.setenv("L3IC_CACHE", str(blocked / "sub"))  # cannot be created under a file
    assert cache.folder() is None
    assert Codec("medium", "cpu").decode(coded).shape == (48, 64, 3)
