"""Per-stage speed and peak memory of l3ic, next to the standard codecs: ``python -m benchmarks.speed``.

For each model and image size, a fresh worker process times (median of
``--runs``) every stage of the codec's own code path — model load, encoder
inference, FSE encode, container write; container read, FSE decode, decoder
inference — and reports its peak RSS; then it times encoder-side refinement
(``--refine-steps`` steps, after a warm-up) and reports the peak RSS that
reached.  The whole CLI (``l3ic encode`` / ``l3ic decode``, process start
included) is timed too, and the same image goes through the standard codecs'
command-line tools on the same machine; a last table gives the CLI latency
against ``cjxl``/``djxl`` and ``avifenc``/``avifdec`` as ratios rather than
numbers from elsewhere (``--cli-only``: that table alone, in a minute).

Whole-process times are given as wall seconds and as CPU seconds (user +
system of the process): when other programs share the cores, wall time grows
and CPU time does not, so on a busy machine the CPU ratios are the steadier
ones (on an idle one a multi-threaded tool may use more CPU than wall time).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from l3ic.files import write_bytes_atomic

SIZES = {"768x512": (768, 512), "1920x1080": (1920, 1080)}
CLI_RIVALS = ("jxl", "avif")  # the CLI latency targets: decode within 2x djxl and avifdec, encode within 2x cjxl
STAGES = ("load", "encoder", "entropy_encode", "container_write", "container_read", "entropy_decode", "decoder")
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "rose.png")


def test_image(size, folder=None):
    """A photo of the given size: the first image of ``folder`` (or the bundled sample) resized to cover it, centre-cropped."""
    path = SAMPLE
    if folder:
        from l3ic.image import list_images
        path = list_images(folder, required=True)[0]
    image = Image.open(path).convert("RGB")
    w, h = size
    scale = max(w / image.width, h / image.height)
    image = image.resize((max(w, round(image.width * scale)), max(h, round(image.height * scale))), Image.LANCZOS)
    left, top = (image.width - w) // 2, (image.height - h) // 2
    return np.asarray(image.crop((left, top, left + w, top + h)))


def median_time(fn, runs):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure_stages(model, provider, rgb, runs, refine_steps=0):
    """Time each stage of Codec.encode / Codec.decode, calling the codec's own stage methods."""
    from l3ic import container, read_latents
    from l3ic.codec import Codec
    from l3ic.image import from_array
    from l3ic.refine import refined_latents
    from l3ic.synthesis import latent_values, synthesise
    t = {}
    t["load"], codec = median_time(lambda: Codec(model, provider), 1)
    codec.model.encoder, codec.model.decoder  # sessions are created lazily: include that in "load"
    t["load"] += median_time(lambda: (codec.model.encoder, codec.model.decoder), 1)[0]
    picture = from_array(rgb)
    codec.decode(codec.encode(picture))  # warm-up
    header = codec.header_for(picture)
    t["encoder"], latents = median_time(lambda: codec.quantise(codec.analyse(picture.rgb(), header), header), runs)
    # entropy coding: for format 3 models the hyper-synthesis (ẑ -> tables) and the FSE coder
    t["entropy_encode"], (tiles, z_chunks) = median_time(lambda: codec.code(latents, header), runs)
    t["container_write"], data = median_time(lambda: container.write(header, tiles, picture.side_data, z_chunks), runs)
    t["container_read"], (parsed, coder) = median_time(lambda: codec.parse(data), runs)
    t["entropy_decode"], values = median_time(lambda: latent_values(parsed, coder), runs)
    t["decoder"], _ = median_time(lambda: synthesise(coder.model, values, parsed.header), runs)
    assert np.array_equal(read_latents(data), codec.encode_latents(picture))
    t["bytes"] = len(data)
    t["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if refine_steps:
        refine = lambda steps: refined_latents(codec.model, codec.tiling, picture.rgb(), header, steps)
        refine(1)  # warm-up: creates the decoder_gradient session
        seconds, _ = median_time(lambda: refine(refine_steps), 1)
        t["refine_step"] = (seconds - t["encoder"]) / refine_steps  # the scorings of the hard rounding included
        t["refine_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return t


def process_times(fn, runs):
    """(median wall seconds, median CPU seconds, last result) of ``fn``, which runs and waits for subprocesses.

    CPU seconds: user + system time of the child processes that ``fn`` waited for.
    """
    walls, cpus, result = [], [], None
    for _ in range(runs):
        wall, cpu, result = _process_time(fn)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus), result


def _process_time(fn):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, result


def cli_times(model, rgb, runs):
    """Wall and CPU time of the whole ``l3ic encode`` / ``l3ic decode`` (process start and model load included),
    and of a process that only imports what they need, in paired runs: each round runs the three in turn, so that
    the ratios (``cli_encode_ratio``, ``cli_decode_ratio``: medians of each round's ratio) see the same load."""
    folder = tempfile.mkdtemp(prefix="l3ic-speed-")
    try:
        src, coded, out = (os.path.join(folder, n) for n in ("in.png", "x.l3ic", "out.png"))
        Image.fromarray(rgb).save(src)
        l3ic = [sys.executable, "-m", "l3ic"]  # the console script's code path, without depending on PATH
        commands = {"cli_encode": l3ic + ["encode", src, "-o", coded, "-f", "-m", model],
                    "cli_decode": l3ic + ["decode", coded, "-o", out, "-f"],
                    "cli_imports": [sys.executable, "-c", "import numpy, onnxruntime, PIL.Image"]}  # the least a
        # Python tool on ONNX Runtime can take: the interpreter's start and the runtime's imports, before any work
        byte_compile_l3ic()
        subprocess.run(commands["cli_encode"], check=True, capture_output=True, cwd=folder)  # a first run fills the
        # per-user cache (l3ic.cache), as any user's first run does
        rounds = {name: [] for name in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                rounds[name].append(_process_time(lambda: subprocess.run(cmd, check=True, capture_output=True, cwd=folder)))
        row = {}
        for name, times in rounds.items():
            row[name] = statistics.median(t[0] for t in times)
            row[name + "_cpu"] = statistics.median(t[1] for t in times)
        for name in ("cli_encode", "cli_decode"):
            row[name + "_ratio"] = statistics.median(a[0] / b[0] for a, b in zip(rounds[name], rounds["cli_imports"]))
        row["cli_bpp"] = 8.0 * os.path.getsize(coded) / rgb.shape[0] / rgb.shape[1]
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def byte_compile_l3ic():
    """Write the l3ic package's bytecode, as pip does when it installs the wheel: an editable install run with
    PYTHONDONTWRITEBYTECODE set would otherwise compile every module in every process, which no installed copy
    does (numpy, ONNX Runtime and Pillow, installed by pip, come compiled)."""
    import compileall
    import l3ic
    compileall.compile_dir(os.path.dirname(l3ic.__file__), quiet=1)


def standard_codecs(rgb, runs, names=None):
    """Encode/decode wall and CPU times of the standard codecs' CLIs at a mid quality, where installed."""
    from benchmarks.codecs import STANDARD, available
    folder = tempfile.mkdtemp(prefix="l3ic-speed-")
    rows = {}
    try:
        src = os.path.join(folder, "in.png")
        Image.fromarray(rgb).save(src)
        for codec in STANDARD:
            if (names and codec.name not in names) or not available(codec):
                continue
            quality = codec.speed_quality
            enc_t, enc_cpu, out = process_times(lambda: codec.encode(src, quality, folder), runs)
            dec_t, dec_cpu, _ = process_times(lambda: codec.decode(out, folder), runs)
            rows[codec.name] = {"encode": enc_t, "decode": dec_t, "encode_cpu": enc_cpu, "decode_cpu": dec_cpu,
                                "bpp": 8.0 * codec.stream_bytes(out) / rgb.shape[0] / rgb.shape[1]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def worker(args):
    """Run in a fresh process so that peak RSS belongs to one (model, size) alone."""
    rgb = test_image(SIZES[args.size], args.images)
    result = measure_stages(args.model, args.provider, rgb, args.runs, args.refine_steps)
    print(json.dumps(result))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="low,medium,high")
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--images", help="folder whose first image is used (default: the bundled sample, resized)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--refine-steps", type=int, default=5, help="refinement steps to time per model and size (0: skip)")
    p.add_argument("--providers", default=None, help="comma list of cpu,cuda (default: cpu, plus cuda when available)")
    p.add_argument("--no-cli", action="store_true", help="skip whole-process CLI timings and standard codecs")
    p.add_argument("--cli-only", action="store_true", help="only the CLI latency against cjxl/djxl and avifenc/avifdec")
    p.add_argument("--cli-runs", type=int, default=5, help="runs of each whole-process timing (median; default 5)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--provider", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    import onnxruntime as ort
    providers = args.providers.split(",") if args.providers else (
        ["cpu", "cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() and not args.cli_only else ["cpu"])
    from l3ic.model import find_model
    models = [m for m in args.models.split(",") if _exists(find_model, m)]
    results = {"machine": machine(), "l3ic": [], "standard": {}}
    for size in args.sizes.split(","):
        rgb = test_image(SIZES[size], args.images)
        for model in models:
            for provider in providers:
                row = {} if args.cli_only else stage_times(args, model, size, provider)
                row.update({"model": model, "size": size, "provider": provider})
                if not args.no_cli and provider == "cpu":
                    row.update(cli_times(model, rgb, args.cli_runs))
                results["l3ic"].append(row)
        if not args.no_cli:
            results["standard"][size] = standard_codecs(rgb, args.cli_runs, CLI_RIVALS if args.cli_only else None)
    print_tables(results)
    if args.json:
        write_bytes_atomic(args.json, json.dumps(results, indent=2).encode(), overwrite=True)


def stage_times(args, model, size, provider):
    """``measure_stages`` in a fresh worker process (its peak RSS is this model's and size's alone)."""
    cmd = [sys.executable, "-m", "benchmarks.speed", "--worker", "--model", model, "--size", size,
           "--provider", provider, "--runs", str(args.runs), "--refine-steps", str(args.refine_steps)] + (["--images", args.images] if args.images else [])
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def _exists(find_model, name):
    try:
        find_model(name)
        return True
    except Exception:
        print("note: model %s not found, skipped" % name, file=sys.stderr)
        return False


def machine():
    import onnxruntime as ort
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "onnxruntime": ort.__version__, "python": sys.version.split()[0]}


def print_tables(results):
    m = results["machine"]
    print("machine: %s, %d cores, ONNX Runtime %s" % (m["cpu"], m["cores"], m["onnxruntime"]))
    staged = [r for r in results["l3ic"] if "encoder" in r]
    if staged:
        print_stage_table(staged)
    refined = [r for r in results["l3ic"] if "refine_step" in r]
    if refined:
        print("\nencoder-side refinement (--refine), one run:\n")
        print("| model | size | provider | ms per step | peak RSS |\n|---|---|---|---|---|")
        for r in refined:
            print("| %s | %s | %s | %.0f | %.0f MiB |" % (r["model"], r["size"], r["provider"], 1000 * r["refine_step"], r["refine_peak_rss_mib"]))
    for size, rows in results["standard"].items():
        if rows:
            print("\nstandard codecs, %s (CLI, process start included; CPU = user + system seconds):\n" % size)
            print("| codec | encode s | decode s | encode CPU s | decode CPU s | bpp |\n|---|---|---|---|---|---|")
            for name, r in rows.items():
                print("| %s | %.3f | %.3f | %.3f | %.3f | %.2f |" % (name, r["encode"], r["decode"], r["encode_cpu"], r["decode_cpu"], r["bpp"]))
        print_latency_table(size, [r for r in results["l3ic"] if r["size"] == size and "cli_encode" in r], rows)


def print_stage_table(rows):
    print()
    head = ("| model | size | provider | " + " | ".join(STAGES) +
            " | encode total | decode total | entropy share of decode | CLI enc | CLI dec | peak RSS |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        enc = r["encoder"] + r["entropy_encode"] + r["container_write"]
        dec = r["container_read"] + r["entropy_decode"] + r["decoder"]
        share = (r["container_read"] + r["entropy_decode"]) / dec
        cells = ["%.1f" % (1000 * r[s]) for s in STAGES]
        cli = ["%.2f" % r[k] if k in r else "-" for k in ("cli_encode", "cli_decode")]
        print("| %s | %s | %s | %s | %.1f | %.1f | %.1f%% | %s | %s | %.0f MiB |" % (
            r["model"], r["size"], r["provider"], " | ".join(cells), 1000 * enc, 1000 * dec, 100 * share, cli[0], cli[1], r["peak_rss_mib"]))
    print("\n(stages in milliseconds, median of --runs; CLI columns in seconds, whole process; entropy share of "
          "decode = container read + entropy decode (FSE, and for format 3 the hyper-synthesis) / decode total)")


def print_latency_table(size, l3ic_rows, standard):
    """The l3ic CLI against cjxl/djxl and avifenc/avifdec: its times divided by theirs (targets: 2x or less)."""
    rivals = [name for name in CLI_RIVALS if name in standard]
    if not l3ic_rows or not rivals:
        return
    print("\nCLI latency, %s: l3ic's whole-process time / the other tool's, wall (CPU); target <= 2x:\n" % size)
    cells = [(name, kind) for name in rivals for kind in ("encode", "decode")]
    print("| l3ic model | encode s | decode s | bpp | imports only s | encode / imports | decode / imports | "
          + " | ".join("%s / %s" % (k, TOOL_NAMES[n][k]) for n, k in cells) + " |")
    print("|" + "---|" * (7 + len(cells)))
    for r in l3ic_rows:
        ratios = ["%.2fx (%.2fx)" % (r["cli_" + k] / standard[n][k], r["cli_%s_cpu" % k] / max(standard[n][k + "_cpu"], 1e-6))
                  for n, k in cells]
        print("| %s | %.3f (%.3f) | %.3f (%.3f) | %.2f | %.3f (%.3f) | %.2fx | %.2fx | %s |" % (
            r["model"], r["cli_encode"], r["cli_encode_cpu"], r["cli_decode"], r["cli_decode_cpu"], r["cli_bpp"],
            r["cli_imports"], r["cli_imports_cpu"], r["cli_encode_ratio"], r["cli_decode_ratio"], " | ".join(ratios)))
    print("\nimports only: a Python process that imports numpy, ONNX Runtime and Pillow and exits, the floor of any "
          "CLI on them; encode / imports and decode / imports: the median of paired runs' ratios (target <= 1.8x)")


TOOL_NAMES = {"jxl": {"encode": "cjxl", "decode": "djxl"}, "avif": {"encode": "avifenc", "decode": "avifdec"}}


if __name__ == "__main__":
    main()
