"""``python -m l3ic.batch_ray --input DIR --output DIR``: encode a folder of images on a Ray cluster.

The files are a Ray Data dataset of (input, output) paths; ``map_batches``
runs them through a pool of ``--workers`` actors, each holding its own Codec
(ONNX Runtime sessions created once, ``--threads`` threads, one Ray CPU per
thread), which read an image, encode it and write the .l3ic atomically
(``l3ic.files``) into the output folder.  A file that fails is reported
on its own line and recorded; at the end a manifest is written (JSON lines,
one per input, sorted by input: input, output, bytes_in, pixels, bytes,
bpp, model, seconds, error — null where a failed file has no value),
then a summary line, and the exit status is 1 if any file failed.

Without ``--address`` a local Ray instance is started for the run
(``--num-cpus``, a small object store: only paths and results travel through
it).  With ``--address auto`` (a node of a running cluster) or
``--address ray://HEAD:10001`` (Ray Client) the job runs on that cluster: the
l3ic package, with the models it uses, must be installed on every worker
node, and ``--input``/``--output`` must be paths that every node sees (a
shared file system), since the actors read and write the files themselves.
Ray is an optional dependency: ``pip install 'l3ic[ray]'`` (Ray Data >= 2.10).
"""
import contextlib
import json
import logging
import os
import sys
import tempfile
import time

from l3ic import batch, cli
from l3ic.codec import CodecCache
from l3ic.files import write_atomic
from l3ic.encode import IMAGE_SUFFIXES, add_encode_flags, encode_one, encode_options
from l3ic.errors import L3icError, first_line
from l3ic.image import DEFAULT_MAX_PIXELS
from l3ic.options import PROVIDERS

FIELDS = ("input", "output", "bytes_in", "pixels", "bytes", "bpp", "model", "seconds", "error")
MANIFEST = "manifest.jsonl"


def parse_args(argv):
    p = cli.Parser(prog="python -m l3ic.batch_ray", description="Encode many images on a Ray cluster.")
    p.add_argument("--input", action="append", required=True, metavar="DIR",
                   help="folder or glob of images (repeatable); the paths must be valid on every node")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the .l3ic files (created if missing)")
    p.add_argument("-m", "--model", help="model: low, medium (default), high, or a model folder (on every node)")
    add_encode_flags(p)
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--manifest", help="results file, JSON lines (default: OUTPUT/%s)" % MANIFEST)
    p.add_argument("--address", help="Ray cluster to use: 'auto' (from a cluster node) or ray://HOST:10001; default: start a local one")
    p.add_argument("--workers", type=cli.positive_int, help="encoder actors (default: the cluster's CPUs / --threads)")
    p.add_argument("--threads", type=cli.positive_int, default=1, help="ONNX Runtime threads (and Ray CPUs) per actor (default 1)")
    p.add_argument("--num-cpus", type=cli.positive_int, help="CPUs of the local Ray instance (default: all; not with --address)")
    p.add_argument("--object-store-mb", type=cli.positive_int, default=200, help="object store of the local Ray instance (default 200)")
    p.add_argument("--provider", default="auto", choices=PROVIDERS, help="ONNX Runtime execution provider")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (default %(default)d)")
    p.add_argument("--quiet", action="store_true", help="no Ray progress bars")
    return p.parse_args(argv)


class Encoder:
    """A Ray Data actor: one Codec per model, created once; encodes the files of each batch of rows."""

    def __init__(self, options, providers, threads, max_pixels):
        self.options = options
        self.codecs = CodecCache(providers, threads, max_pixels)

    def __call__(self, rows):
        out = {name: [] for name in FIELDS}
        for src, dst in zip(rows["input"], rows["output"]):
            src, dst = str(src), str(dst)
            result, error = batch.attempt(encode_one, self.codecs, (src, dst, self.options))
            result = result or {"bytes_in": -1, "pixels": -1, "bytes_out": -1, "model": "", "seconds": -1.0}
            for name, value in (("input", src), ("output", dst), ("bytes_in", result["bytes_in"]),
                                ("pixels", result["pixels"]), ("bytes", result["bytes_out"]),
                                ("bpp", 8.0 * result["bytes_out"] / result["pixels"]), ("model", result["model"]),
                                ("seconds", result["seconds"]), ("error", error or "")):
                out[name].append(value)  # '' and -1 for a failed file: Ray's columns need one type
        return out


def plan(args):
    """The (input, output) pairs: absolute paths, so that every node reads the same files."""
    files, _ = batch.expand(args.input, IMAGE_SUFFIXES)  # a folder or glob without images is an error there
    output = os.path.abspath(args.output)
    jobs = [(os.path.abspath(f), batch.output_for(f, output, True, ".l3ic")) for f in files]
    batch.check_distinct_outputs(jobs)
    return jobs


def connect(args):
    """Start or join Ray; returns whether this run started it (and so shuts it down)."""
    try:
        import ray
    except ImportError:
        raise L3icError("Ray is not installed: pip install 'l3ic[ray]' (or 'ray[data]>=2.10')")
    if ray.is_initialized():  # the caller's session (a test, a notebook)
        return False
    if args.address and args.num_cpus:
        raise L3icError("--num-cpus is for the local Ray instance; the cluster at --address has its own")
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    try:
        if args.address:
            ray.init(address=args.address, **quiet)
        else:
            ray.init(num_cpus=args.num_cpus, object_store_memory=args.object_store_mb << 20,
                     include_dashboard=False, **quiet)
    except Exception as e:  # ConnectionError, ValueError, RuntimeError, ... depending on the Ray version
        where = "the Ray cluster at %s" % args.address if args.address else "a local Ray instance"
        raise L3icError("cannot start or reach %s: %s" % (where, first_line(e)))
    return True


def run(args, chosen, jobs):
    """Encode the jobs on the Ray cluster; yields one result row per file, as they finish."""
    import ray
    from l3ic.batch_ray import Encoder  # by its module name, so that workers import it rather than unpickle __main__
    if args.quiet or not sys.stderr.isatty():  # Ray Data logs its progress as lines where it cannot draw bars
        ray.data.DataContext.get_current().enable_progress_bars = False
    workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // args.threads)
    workers = min(workers, len(jobs))
    options = (chosen, args.strip, args.force, False, args.max_pixels)
    rows = [{"input": src, "output": dst} for src, dst in jobs]
    blocks = min(len(rows), 16 * workers)  # small blocks: an actor takes a block at a time, so they balance the load
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        Encoder, fn_constructor_args=(options, args.provider, args.threads, args.max_pixels),
        batch_size=1, batch_format="numpy", num_cpus=args.threads, compute=ray.data.ActorPoolStrategy(size=workers))
    for row in dataset.iter_rows():
        yield manifest_row(row)


def manifest_row(row):
    """A result row from Ray (numpy scalars, '' / -1 for missing) -> plain JSON values, null for missing."""
    error = str(row["error"]) or None
    out = {"input": str(row["input"]), "output": str(row["output"])}
    for name, kind, digits in (("bytes_in", int, None), ("pixels", int, None), ("bytes", int, None),
                               ("bpp", float, 5), ("model", str, None), ("seconds", float, 4)):
        value = None if error else kind(row[name])
        out[name] = round(value, digits) if digits and value is not None else value
    out["error"] = error
    return out


def write_manifest(path, rows):
    text = "".join(json.dumps(row, sort_keys=False) + "\n" for row in sorted(rows, key=lambda r: r["input"]))
    write_atomic(path, lambda f: f.write(text.encode("utf-8")), overwrite=True)


def main(argv=None):
    args = parse_args(argv)
    chosen = encode_options(args)  # bad options are errors before Ray starts
    jobs = plan(args)
    batch.make_output_folder(args.output, True, "--output")
    manifest = os.path.abspath(args.manifest or os.path.join(args.output, MANIFEST))
    started = time.perf_counter()
    rows, failure = [], None
    with ray_output_aside() as (errors, log):
        own_cluster = connect(args)
        try:
            for row in run(args, chosen, jobs):
                rows.append(row)
                if row["error"]:
                    print(batch.error_line(row["input"], row["error"]), file=errors)
        except Exception as e:  # the Ray job itself failed (a node or actor lost for good): keep what was done
            failure = "the Ray job failed: %s: %s (Ray's log: %s)" % (type(e).__name__, first_line(e), log)
        finally:
            if own_cluster:
                import ray
                ray.shutdown()
    if not failure:
        os.remove(log)
    finished = {r["input"] for r in rows}
    rows += [manifest_row({"input": src, "output": dst, "error": "not encoded: " + (failure or "no result")})
             for src, dst in jobs if src not in finished]
    write_manifest(manifest, rows)
    done = [(None, None if r["error"] else dict(r, bytes_out=r["bytes"], l3ic_bytes=r["bytes"]), r["error"]) for r in rows]
    print("%s; manifest %s" % (batch.summary(done, started, "images"), manifest))
    if failure:
        raise L3icError(failure)
    return 1 if any(r["error"] for r in rows) else 0


@contextlib.contextmanager
def ray_output_aside():
    """Ray prints INFO and WARNING lines, and its C++ workers' log lines, on the process's stderr even when a
    run succeeds; within the block they go to a log file instead, kept when the block raised.  Yields (the
    stream for l3ic's own error lines, the log's path); the caller removes the log when it has no use for it."""
    sys.stderr.flush()
    fd, log = tempfile.mkstemp(prefix="l3ic-ray-", suffix=".log")
    saved = os.dup(2)
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test's capture, not the process's stderr
        real = False
    errors = os.fdopen(os.dup(saved), "w", buffering=1) if real else sys.stderr
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield errors, log
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if errors is not sys.stderr:
            errors.close()


if __name__ == "__main__":
    sys.exit(cli.run(main))
