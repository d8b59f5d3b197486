"""l3ic export pipeline: train the model in TensorFlow and export it to ONNX (maintainers' tools, run from the
checkout; not installed)."""
import importlib.util

EXPORT_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx")


def require_export_extra(tool, packages=EXPORT_PACKAGES):
    """Exit with one line when the ``export`` extra (TensorFlow, tf2onnx, onnx) is not installed."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit("%s: error: needs %s: pip install -e '.[export]' in the checkout (the l3ic[export] extra)"
                         % (tool, ", ".join(missing)))
