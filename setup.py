"""Packaging of l3ic.  The FSE entropy coder is a cffi extension (l3ic._fse) built by
build_fse.py, which fetches zstd's amalgamated source at build time (see its docstring).

Installed: the package ``l3ic`` (with the shipped models as ``l3ic.models``), ``runtime`` (the first
import name, kept for ``python -m runtime.encode``) and the ``l3ic`` command.  The maintainers' tools,
``export`` and ``benchmarks``, are not installed: they run from the checkout (``pip install -e .``).
"""
import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "src", "l3ic", "__init__.py")) as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

setup(
    name="l3ic",
    version=VERSION,
    description="A lightweight learned lossy image codec (ONNX Runtime inference, FSE entropy coding)",
    python_requires=">=3.8",
    packages=["l3ic", "l3ic.entropy", "l3ic.refine", "l3ic.models", "runtime"],
    package_dir={"": "src", "l3ic.models": "models"},
    license="Apache-2.0",
    license_files=["LICENSE", "src/l3ic/LICENSE-zstd.txt", "models/LICENSE.md"],
    package_data={"l3ic": ["LICENSE-zstd.txt"],  # next to the compiled FSE (l3ic/_fse), which contains zstd
                  "l3ic.models": ["LICENSE.md", "*/encoder.onnx", "*/decoder.onnx", "*/decoder_gradient.onnx", "*/entropy_model.npz",
                                  "*/manifest.json", "legacy/*/decoder.onnx", "legacy/*/entropy_model.npz", "legacy/*/manifest.json"]},
    entry_points={"console_scripts": ["l3ic = l3ic.cli:main"]},
    setup_requires=["cffi>=1.15"],
    cffi_modules=["build_fse.py:ffibuilder"],
    install_requires=[
        "numpy>=1.19",
        "onnxruntime>=1.11",
        "cffi>=1.15",
        "Pillow>=8",
        "zstandard>=0.15",
    ],
    extras_require={
        "export": ["tensorflow-cpu>=2.15", "tf2onnx>=1.16", "onnx>=1.14"],
        "gpu": ["onnxruntime-gpu>=1.11"],
        "ray": ["ray[data]>=2.10"],
        "test": ["pytest>=7", "hypothesis>=6", "onnx>=1.14", "scipy>=1.7", "bjontegaard>=1.2", "vermin>=1.5"],
        "bench": ["matplotlib>=3.5", "tqdm>=4", "scipy>=1.7"],
    },
    zip_safe=False,
)
