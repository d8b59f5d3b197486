"""Packaging of l3ic.  The FSE entropy coder is a cffi extension (runtime._fse) built by
build_fse.py, which fetches zstd's amalgamated source at build time (see its docstring)."""
from setuptools import setup

setup(
    name="l3ic",
    version="0.1.0",
    description="A lightweight learned lossy image codec (ONNX Runtime inference, FSE entropy coding)",
    python_requires=">=3.8",
    packages=["runtime", "runtime.models", "export", "benchmarks"],
    package_dir={"runtime.models": "models"},
    package_data={"runtime.models": ["*/encoder.onnx", "*/decoder.onnx", "*/decoder_gradient.onnx", "*/entropy_model.npz",
                                     "*/manifest.json", "legacy/*/decoder.onnx", "legacy/*/manifest.json"]},
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
