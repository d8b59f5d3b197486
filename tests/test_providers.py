"""Execution-provider choice (CUDA when onnxruntime-gpu offers it) and the batch default it drives, with a faked
list of available providers: no GPU is needed."""
import concurrent.futures
import subprocess
import sys

import onnxruntime
import pytest

from l3ic import batch
from l3ic.errors import ModelError
from l3ic.model import Model, resolve_providers

CUDA, CPU, TRT = "CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"


@pytest.fixture
def available(monkeypatch):
    def fake(providers):
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(providers))
    return fake


@pytest.mark.parametrize("providers, expected", [
    (None, [CUDA, CPU]), ("auto", [CUDA, CPU]), ("cuda", [CUDA, CPU]), ("cpu", [CPU]), ([TRT, CUDA, CPU], [TRT, CUDA, CPU]),
])
def test_with_onnxruntime_gpu(available, providers, expected):
    available([TRT, CUDA, CPU])
    assert resolve_providers(providers) == expected


@pytest.mark.parametrize("providers, expected", [(None, [CPU]), ("auto", [CPU]), ("cpu", [CPU])])
def test_cpu_only(available, providers, expected):
    available([CPU])
    assert resolve_providers(providers) == expected


def test_cuda_asked_but_missing(available):
    available(["AzureExecutionProvider", CPU])
    with pytest.raises(ModelError, match="CUDA execution provider is not available"):
        resolve_providers("cuda")
    with pytest.raises(ModelError, match="unknown provider 'gpu'"):
        resolve_providers("gpu")


def test_model_takes_the_resolved_providers(available):
    available([CUDA, CPU])
    assert Model("medium").providers == [CUDA, CPU]  # sessions are created lazily: nothing runs on the fake GPU
    assert Model("medium", "cpu").providers == [CPU]


def test_batch_default_jobs(available, monkeypatch):
    available([CPU])
    monkeypatch.setattr(batch.os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert batch.default_jobs("auto") == 2
    monkeypatch.setattr(batch.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert batch.default_jobs("auto") == batch.MAX_DEFAULT_JOBS
    assert batch.default_jobs("cpu") == batch.MAX_DEFAULT_JOBS
    available([CUDA, CPU])
    assert batch.default_jobs("auto") == 1  # one process drives the GPU
    assert batch.default_jobs("cpu") == batch.MAX_DEFAULT_JOBS


def test_batch_pool_size_and_threads(available, monkeypatch):
    """Without --jobs a CPU batch gets one single-threaded worker per core; a single file stays in-process."""
    available([CPU])
    monkeypatch.setattr(batch.os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    pools = []

    class Pool(concurrent.futures.ThreadPoolExecutor):  # stands in for the process pool
        def __init__(self, workers, initializer, initargs):
            pools.append((workers, initargs))
            super().__init__(workers, initializer=initializer, initargs=initargs)

    monkeypatch.setattr(batch, "ProcessPoolExecutor", Pool)
    work = lambda codecs, name: {"threads": codecs.threads, "line": name}  # noqa: E731
    for count, jobs in ((6, None), (3, None), (6, 2), (6, 1), (1, None)):
        pools.clear()
        done = batch.run(work, [("f%d" % i,) for i in range(count)], jobs, "auto", 1000, batch=count > 1)
        assert len(done) == count and all(error is None for _, _, error in done)
        workers = min(jobs or 4, count)
        if workers > 1:
            assert pools == [(workers, ("auto", 1, 1000, True))]
            assert {r["threads"] for _, r, _ in done} == {1}
        else:
            assert pools == [] and {r["threads"] for _, r, _ in done} == {None}  # None: ONNX Runtime uses all cores


def test_cli_cuda_without_gpu_is_one_line(tmp_path):
    from conftest import SAMPLE
    result = subprocess.run([sys.executable, "-m", "runtime.encode", SAMPLE, "-o", str(tmp_path / "x.l3ic"), "--provider", "cuda"],
                            capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["l3ic: error: %s: the CUDA execution provider is not available "
                                                  "(install onnxruntime-gpu and a CUDA runtime)" % SAMPLE]
