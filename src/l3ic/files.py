"""Read inputs and write outputs all-or-nothing; ``-`` is the standard input or output.

Outputs are written to a temporary file in the destination folder and renamed
over the target only once complete, so an interrupted or failed run never
leaves a half-written file, and an existing file is replaced only on request.
Standard output gets the whole result in one write at the end, so a failed run
writes nothing there either; binary data is never written to a terminal.
"""
import errno
import io
import os
import sys
import tempfile

from l3ic.errors import L3icError

STDIO = "-"  # as an input: standard input; as an output: standard output


def display_name(path, stream):
    """How messages name a file: ``-`` as the standard ``stream`` it stands for ("standard input")."""
    return stream if path == STDIO else path


def read_input(path):
    """The bytes of an input file (``-``: all of standard input), with one-line errors."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    if os.path.isdir(path):
        raise L3icError("%s is a directory" % path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise L3icError("no such file: %s" % path)
    except OSError as e:
        raise L3icError("cannot read %s: %s" % (path, e.strerror or e))


def check_output_path(path, inputs=(), overwrite=False):
    """Fail early (before any work) if ``path`` cannot or must not be written."""
    if path == STDIO:
        if sys.stdout.isatty():
            raise L3icError("refusing to write binary data to a terminal: redirect standard output, or give -o FILE")
        return
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
    """Call ``write(fileobj)`` on a temporary file, then rename it to ``path`` (``-``: then copy it to standard
    output)."""
    if path == STDIO:
        check_output_path(path)
        buffer = io.BytesIO()
        write(buffer)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
        return
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
