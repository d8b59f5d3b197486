"""A per-user cache of start-up work that need not be repeated on every run of the ``l3ic`` tools.

Two things are kept, in ``$L3IC_CACHE`` (default ``$XDG_CACHE_HOME/l3ic``,
else ``~/.cache/l3ic``):

* **verified model files**: an empty stamp per model file whose sha256 was
  checked against its manifest, named by that hash and the file's identity
  on disk (device, inode, size, modification time).  A replaced or modified
  file has another identity, so it is hashed again.
* **ONNX Runtime's optimised graphs**: graph optimisation (constant folding,
  fusing, the CPU's blocked layouts) took half of a session's creation; the
  optimised graph is saved once per model file, ONNX Runtime version and CPU,
  and later sessions load it without optimising again.  It computes the
  same outputs (``tests/test_cache.py``).

Nothing here is needed: when the folder cannot be created or written, every
run does the work itself, as with ``L3IC_CACHE=off``.
"""
import hashlib
import os
import platform
import tempfile

OFF = "off"


def folder():
    """The cache folder (created), or None when caching is off or impossible."""
    root = os.environ.get("L3IC_CACHE")
    if root == OFF:
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "l3ic")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


def _identity(path):
    st = os.stat(path)
    return "%x-%x-%x-%x" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stamp(path, sha256):
    root = folder()
    if root is None:
        return None
    try:
        return os.path.join(root, "verified", "%s-%s" % (sha256, _identity(path)))
    except OSError:
        return None


def is_verified(path, sha256):
    """Whether ``path`` was found to have ``sha256`` and has not changed since."""
    stamp = _stamp(path, sha256)
    return stamp is not None and os.path.exists(stamp)


def mark_verified(path, sha256):
    """Remember that ``path`` has ``sha256`` (checked by the caller)."""
    stamp = _stamp(path, sha256)
    if stamp is None:
        return
    try:
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "a"):
            pass
    except OSError:
        pass


def optimized_graph(sha256, ort_version):
    """Where ONNX Runtime's optimised graph of the model file with ``sha256`` lives for this ONNX Runtime version
    and CPU, or None when caching is off."""
    root = folder()
    if root is None:
        return None
    machine = hashlib.sha256(("%s %s %s" % (platform.machine(), platform.processor(), _cpu_flags())).encode())
    return os.path.join(root, "ort", "%s-%s-%s.onnx" % (sha256[:32], ort_version, machine.hexdigest()[:12]))


def temporary_sibling(path):
    """A new temporary file name next to ``path`` (for writing it whole, then renaming it in place)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(path))
    os.close(fd)
    return tmp


def _cpu_flags():
    """The CPU's feature flags (Linux), which decide the kernels an optimised graph was laid out for."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
