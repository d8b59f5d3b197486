"""Shipped models and their ONNX Runtime sessions.

A model is a folder with ``encoder.onnx``, ``decoder.onnx``,
``manifest.json``, for encoder-side refinement ``decoder_gradient.onnx``, and,
for a format-3 model, ``entropy_model.npz`` (its hyperprior and FSE tables,
see ``l3ic.hyperprior``), all written by ``export.to_onnx``.  The quality names
``low``/``medium``/``high`` refer to the folders shipped in ``models/``; they
are found next to the installed package (package data ``l3ic/models``) or,
in a source checkout, in the repository's ``models/`` folder.  Any other value
is a path to a model folder.

Model files are checked against the sha256 in the manifest before use, so a
damaged download is a clear error instead of garbage images.

Files made by earlier releases keep decoding: their decoders ship as
decode-only models in ``models/legacy/`` and ``find_decoder`` picks one by
the model identity a file records.  A file is shipped once: a folder whose
manifest lists a file it does not hold uses the installed copy with the same
sha256 (``model_file``; ``models/legacy/high-0.4`` decodes with
``models/high/decoder.onnx``).
"""
import hashlib
import json
import os
from functools import cached_property

import numpy as np

from l3ic import cache, container, quality
from l3ic.errors import L3icError, ModelError, first_line
from l3ic.quality import Q_UNITS, QUALITY_SCALE

QUALITIES = ("low", "medium", "high")
DEFAULT_MODEL = "medium"
_HERE = os.path.dirname(os.path.abspath(__file__))


def model_roots():
    """Folders searched for named models: $L3IC_MODELS, the installed package data, the source checkout."""
    checkout = os.path.dirname(os.path.dirname(_HERE))  # src/l3ic -> the repository root
    roots = [os.environ.get("L3IC_MODELS"), os.path.join(_HERE, "models"), os.path.join(checkout, "models")]
    return [r for r in roots if r and os.path.isdir(r)]


def _named_model(name):
    """Folder of the shipped model ``name``, or None."""
    for root in model_roots():
        folder = os.path.join(root, name)
        if os.path.isfile(os.path.join(folder, "manifest.json")):
            return folder
    return None


def model_identity(manifest):
    """The 16 bytes a file records to name the model that decodes it.

    sha256(decoder.onnx)[:16] for format-2 models; for format-3 models the
    entropy model decides decoding too, so sha256(sha256(decoder.onnx) ||
    sha256(entropy_model.npz))[:16] (the digests as 32 raw bytes each).
    """
    files = manifest["files"]
    decoder = bytes.fromhex(files["decoder.onnx"]["sha256"])
    if int(manifest.get("format", 2)) < 3:
        return decoder[:16]
    return hashlib.sha256(decoder + bytes.fromhex(files["entropy_model.npz"]["sha256"])).digest()[:16]


def legacy_folders():
    """The decode-only folders of earlier releases (``models/legacy/*``) of every root, in the order searched."""
    return [os.path.join(root, "legacy", entry) for root in model_roots() if os.path.isdir(os.path.join(root, "legacy"))
            for entry in sorted(os.listdir(os.path.join(root, "legacy")))]


def _manifest(folder):
    """The manifest of a model folder, or None where there is none to read."""
    try:
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        return manifest if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        return None


def is_model_name(name):
    """Whether ``name`` could name an installed model: not empty, no path separator, not starting with a dot.  A
    name from a file must pass this before it is looked up, so that a file never makes l3ic open a path."""
    return bool(name) and os.sep not in name and "/" not in name and not name.startswith(".")


def find_decoder(name, identity, current=True):
    """Folder of an installed model called ``name`` whose identity is ``identity``, or None.

    Looks at the legacy decoders and, if ``current``, at the current release.
    ``name`` comes from a file: it is only ever compared, never used as a path.
    """
    candidates = [_named_model(name) if current and is_model_name(name) else None] + legacy_folders()
    for folder in filter(None, candidates):
        try:
            manifest = _manifest(folder)
            if manifest["name"] == name and model_identity(manifest) == identity:
                return folder
        except (KeyError, TypeError, ValueError):
            continue
    return None


def model_file(folder, name, manifest=None):
    """Path of the file ``name`` of a model folder: the folder's own copy, or, for a file its manifest lists
    without a copy, the installed one with the same sha256 (``installed_file``); None if there is neither.

    Identical files are shipped once: a decode-only folder of an earlier
    release lists the decoder it shares with a current model, or with another
    release, and finds it here.  The caller checks the file's hash.
    """
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        return path
    try:
        sha256 = (manifest or _manifest(folder))["files"][name]["sha256"]
    except (KeyError, TypeError):
        return None
    return installed_file(sha256)


def installed_file(sha256):
    """Path of an installed model file with this sha256, as its folder's manifest records it, or None."""
    folders = [os.path.join(root, n) for root in model_roots() for n in sorted(os.listdir(root))] + legacy_folders()
    for folder in folders:
        try:
            files = _manifest(folder)["files"]
            for name in sorted(files):
                if files[name]["sha256"] == sha256 and os.path.isfile(os.path.join(folder, name)):
                    return os.path.join(folder, name)
        except (KeyError, TypeError):
            continue
    return None


def find_model(model):
    """Folder of ``model`` (a quality/model name or a path)."""
    if os.path.isdir(model):
        return model
    if os.sep not in model and "/" not in model:
        folder = _named_model(model)
        if folder:
            return folder
        known = sorted({n for r in model_roots() for n in os.listdir(r) if os.path.isfile(os.path.join(r, n, "manifest.json"))})
        raise ModelError("unknown model %r (shipped models: %s)" % (model, ", ".join(known) or "none"))
    raise ModelError("model folder not found: %s" % model)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_providers(providers):
    """ONNX Runtime execution providers for 'auto' (CUDA when available), 'cpu', 'cuda' or an explicit list."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    if providers is None or providers == "auto":
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError("the CUDA execution provider is not available (install onnxruntime-gpu and a CUDA runtime)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if isinstance(providers, str):
        raise ModelError("unknown provider %r (use auto, cpu or cuda)" % providers)
    return list(providers)


class Model:
    """One l3ic model: its manifest and the encoder/decoder inference sessions."""

    def __init__(self, model=DEFAULT_MODEL, providers=None, threads=None):
        self.threads = threads  # ONNX Runtime intra-op threads; None = all cores
        self.folder = find_model(model)
        self.manifest = self._read_manifest()
        self.name = self.manifest["name"]
        self.channels = int(self.manifest["channels"])
        self.stride = int(self.manifest["stride"])
        self.codebook_min = int(self.manifest["codebook"]["minimum"])
        self.codebook_size = int(self.manifest["codebook"]["size"])
        self.format = int(self.manifest.get("format", 2))  # the bitstream version this model writes
        self.has_hyperprior = self.format >= 3
        self.decoder_hash = model_identity(self.manifest)
        self.providers = resolve_providers(providers)

    def _read_manifest(self):
        path = os.path.join(self.folder, "manifest.json")
        try:
            with open(path) as f:
                manifest = json.load(f)
            manifest["files"]["decoder.onnx"]["sha256"]
            if int(manifest.get("format", 2)) >= 3:
                manifest["files"]["entropy_model.npz"]["sha256"]
            manifest["codebook"]["minimum"], manifest["codebook"]["size"], manifest["stride"], manifest["channels"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError("cannot read model manifest %s: %s" % (path, e))
        return manifest

    def _checked_file(self, name):
        """Path of one of the manifest's files (``model_file``) after checking its hash."""
        if name not in self.manifest["files"]:
            if name == "encoder.onnx":
                raise ModelError("model %r in %s only decodes (a legacy decoder for files of an earlier release)" % (self.name, self.folder))
            raise ModelError("model %r has no %s (exported before it existed): "
                             "python -m export.to_onnx --upgrade %s adds it" % (self.name, name, self.folder))
        expected = self.manifest["files"][name]["sha256"]
        path = model_file(self.folder, name, self.manifest)
        if path is None:
            raise ModelError("model file missing: %s" % os.path.join(self.folder, name))
        if cache.is_verified(path, expected):  # hashed on an earlier run, and unchanged since
            return path
        if file_sha256(path) != expected:
            raise ModelError("model file %s does not match the sha256 in its manifest (damaged or replaced)" % path)
        cache.mark_verified(path, expected)
        return path

    def _session(self, name):
        """Create the inference session for one of the manifest's ONNX files after checking its hash.

        On the CPU, ONNX Runtime's optimised graph is kept in ``l3ic.cache``:
        later runs load it instead of optimising the model again."""
        import onnxruntime as ort
        path = self._checked_file(name)
        optimized = None
        if self.providers == ["CPUExecutionProvider"]:
            optimized = cache.optimized_graph(self.manifest["files"][name]["sha256"], ort.__version__)
        try:
            if optimized and os.path.isfile(optimized):
                try:
                    return self._new_session(optimized, optimise=False)
                except Exception:  # a damaged cache entry: optimise the model again and replace it
                    pass
            return self._new_session(path, save_to=optimized)
        except Exception as e:  # ONNX Runtime raises its own exception types
            raise ModelError("ONNX Runtime cannot load %s: %s" % (path, first_line(e)))

    def _new_session(self, path, optimise=True, save_to=None):
        """An ONNX Runtime session of ``path``; ``save_to``: also write its optimised graph there (atomically)."""
        import onnxruntime as ort
        options = ort.SessionOptions()
        # No memory patterns: a pattern is planned and kept per input shape, and tiled coding runs several
        # shapes (edge tiles), which made the CPU arena grow to ~600 MB; without them it stays ~300 MB and
        # runs as fast (benchmarks/memory.py, 50 MP: decode peak 1001 -> 753 MiB, encode 650 -> 489 MiB).
        options.enable_mem_pattern = False
        options.log_severity_level = 3  # saving an optimised graph warns that it is for this machine only: it is
        if self.threads:
            options.intra_op_num_threads = self.threads
        if not optimise:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        tmp = None
        if save_to:
            try:
                tmp = cache.temporary_sibling(save_to)
                options.optimized_model_filepath = tmp
            except OSError:
                tmp = None
        try:
            session = ort.InferenceSession(path, sess_options=options, providers=self.providers)
            if tmp:
                os.replace(tmp, save_to)
            return session
        finally:
            if tmp and os.path.exists(tmp):
                os.remove(tmp)

    # Sessions and the entropy model load on first use: a decode never loads the encoder.
    @cached_property
    def encoder(self):
        return self._session("encoder.onnx")

    @cached_property
    def decoder(self):
        return self._session("decoder.onnx")

    @cached_property
    def decoder_gradient(self):
        return self._session("decoder_gradient.onnx")

    @cached_property
    def entropy_model(self):
        """The hyperprior of a format-3 model (``l3ic.hyperprior.EntropyModel``)."""
        from l3ic.hyperprior import EntropyModel
        if not self.has_hyperprior:
            raise ModelError("model %r is a format-%d model without a hyperprior" % (self.name, self.format))
        return EntropyModel(self._checked_file("entropy_model.npz"), self.channels, self.codebook_size)

    def refine_parameters(self):
        """The manifest's settings for encoder-side refinement (``l3ic.refine``)."""
        params = self.manifest.get("refine")
        if not isinstance(params, dict) or "lambda" not in params or "learning_rate" not in params:
            raise ModelError("model %r has no refinement settings in its manifest (not trained for MSE, or exported "
                             "before refinement existed: python -m export.to_onnx --upgrade %s adds them)" % (self.name, self.folder))
        return params

    # ---- continuous quality (l3ic.quality) -------------------------------------------------------------
    @cached_property
    def quality_range(self):
        """(lowest, highest) q of the -q scale (0..100) a model trained for continuous quality can encode, else
        None: its grid, through its stretch of ``l3ic.quality.SCALE`` (found once per model)."""
        grid = self.entropy_model.qualities if self.has_hyperprior else None
        return None if grid is None else tuple(u / Q_UNITS for u in quality.reach(self.name, *grid))

    @property
    def default_quality(self):
        """The q of the -q scale an encode without one uses (the model's preset), or None without continuous
        quality."""
        if self.quality_range is None:
            return None
        return quality.from_model(self.name, self.entropy_model.default_quality) / Q_UNITS

    def quality_units(self, q):
        """q of the -q scale (0..100, or None: the model's preset) as the model's own q in hundredths, which a
        file records; None for a model without continuous quality.  L3icError for a bad value, a q outside the
        model's range or any q for such a model."""
        if self.quality_range is None:
            if q is not None:
                raise L3icError("model %r has no continuous quality: use a quality preset or another model" % self.name)
            return None
        if q is None:
            return self.entropy_model.default_quality
        units = quality.quality_units(q)
        lo, hi = self.quality_range
        if not round(lo * Q_UNITS) <= units <= round(hi * Q_UNITS):
            raise ModelError("quality %g is outside this model's range %g..%g" % (units / Q_UNITS, lo, hi))
        return quality.to_model(self.name, units)

    def gain_of(self, header):
        """The ``l3ic.hyperprior.Gain`` a file's latents are coded with (its quality field), or None."""
        return self.entropy_model.gain(header.quality) if header.flags & container.FLAG_QUALITY else None

    def check_header(self, h):
        """ModelError unless header ``h`` describes a file this model can have made (format, geometry, quality)."""
        hyper = (self.entropy_model.z_channels, self.entropy_model.hyper_stride) if self.has_hyperprior else (0, 0)
        if (h.channels, h.stride, h.codebook_size, h.codebook_min, h.version, (h.z_channels, h.hyper_stride)) != \
                (self.channels, self.stride, self.codebook_size, self.codebook_min, self.format, hyper):
            raise ModelError("this file's header does not match model %r (%d channels, stride %d, format %d)"
                             % (self.name, self.channels, self.stride, self.format))
        qualities = self.entropy_model.qualities if self.has_hyperprior else None
        if bool(h.flags & container.FLAG_QUALITY) != (qualities is not None) \
                or (qualities and not qualities[0] <= h.quality <= qualities[1]):
            raise ModelError("this file's quality field does not fit model %r (its own q %s)"
                             % (self.name, "%g..%g" % tuple(u / QUALITY_SCALE for u in qualities) if qualities else "none"))

    # ---- the networks -------------------------------------------------------------------------------------
    def run_encoder(self, rgb):
        """uint8 RGB (H, W, 3), H and W multiples of the stride (and, format 3, of a ẑ cell) -> (latents, ẑ).

        Format 3: latents y float32 (C, H/s, W/s), before gain and rounding,
        and ẑ symbols uint8 (Zc, H/4s, W/4s) (rounded in the graph).  Format 2:
        the codebook values the graph rounds to, float32 (C, H/s, W/s), and None.
        """
        if self.has_hyperprior:
            y, z = self.encoder.run(["latents", "z_symbols"], {"image": np.ascontiguousarray(rgb)[None]})
            return y[0], z[0]
        symbols = self.encoder.run(["symbols"], {"image": np.ascontiguousarray(rgb)[None]})[0][0]
        return symbols.astype(np.float32) + self.codebook_min, None

    def latents(self, rgb):
        """The float latents before rounding (codebook values, C x H/s x W/s), where refinement starts."""
        self.refine_parameters()  # models exported before refinement lack this output too
        return self.encoder.run(["latents"], {"image": np.ascontiguousarray(rgb)[None]})[0][0]

    def squared_error_and_gradient(self, latents, rgb):
        """Squared error (0..255 scale) of decoding float codebook values ``latents`` (C, h, w) against uint8
        RGB (8h, 8w, 3), and its gradient with respect to the latents."""
        sse, gradient = self.decoder_gradient.run(
            ["sse", "gradient"], {"latents": np.ascontiguousarray(latents, np.float32)[None], "image": np.ascontiguousarray(rgb)[None]})
        return float(sse), gradient[0]

    def run_decoder(self, values):
        """Latent values float32 (C, h, w) in codebook units -> float32 RGB in [0, 1] of shape (h*s, w*s, 3).

        A format-2 decoder takes symbol indices: the values are integers of the codebook there.
        """
        if self.has_hyperprior:
            feed = {"latents": np.ascontiguousarray(values, np.float32)[None]}
        else:
            feed = {"symbols": np.ascontiguousarray(values - self.codebook_min, np.float32).astype(np.uint8)[None]}
        return self.decoder.run(["image"], feed)[0][0]
