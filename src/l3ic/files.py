"""Write output files all-or-nothing.

Outputs are written to a temporary file in the destination folder and renamed
over the target only once complete, so an interrupted or failed run never
leaves a half-written file, and an existing file is replaced only on request.
"""
import errno
import os
import tempfile

from l3ic.errors import L3icError


def check_output_path(path, inputs=(), overwrite=False):
    """Fail early (before any work) if ``path`` cannot or must not be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise L3icError("output folder does not exist: %s" % folder)
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise L3icError("output %s is the input file; choose another output" % path)
    if os.path.isdir(path):
        raise L3icError("output %s is a directory" % path)
    if os.path.exists(path) and not overwrite:
        raise L3icError("output %s exists (use -f to overwrite)" % path)
    if not os.access(folder, os.W_OK):
        raise L3icError("cannot write to %s: permission denied" % folder)


def write_atomic(path, write, overwrite=False):
    """Call ``write(fileobj)`` on a temporary file, then rename it to ``path``."""
    path = os.path.abspath(path)
    check_output_path(path, overwrite=overwrite)
    folder, name = os.path.split(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise L3icError("cannot write %s: %s" % (path, os.strerror(e.errno or errno.EIO)))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise L3icError("cannot write %s: %s" % (path, os.strerror(e.errno) if e.errno else e))
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomic(path, data, overwrite=False):
    write_atomic(path, lambda f: f.write(data), overwrite)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
