"""Per-stage speed and peak memory of l3ic, next to the standard codecs: ``python -m benchmarks.speed``.

For each model and image size, a fresh worker process times (median of
``--runs``) every stage of the codec's own code path — model load, encoder
inference, FSE encode, container write; container read, FSE decode, decoder
inference — and reports its peak RSS; then it times encoder-side refinement
(``--refine-steps`` steps, after a warm-up) and reports the peak RSS that
reached.  The whole CLI (``python -m
runtime.encode`` / ``decode``, process start included) is timed too, and the
same image goes through the standard codecs' command-line tools on the same
machine, so the table shows ratios rather than numbers from elsewhere.
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

SIZES = {"768x512": (768, 512), "1920x1080": (1920, 1080)}
STAGES = ("load", "encoder", "entropy_encode", "container_write", "container_read", "entropy_decode", "decoder")
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "rose.png")


def test_image(size, folder=None):
    """A photo of the given size: the first image of ``folder`` (or the bundled sample) resized to cover it, centre-cropped."""
    path = SAMPLE
    if folder:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg")))
        path = os.path.join(folder, names[0])
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
    from l3ic import container
    from l3ic.codec import Codec, latent_values, synthesise
    from l3ic.image import from_array
    t = {}
    t["load"], codec = median_time(lambda: Codec(model, provider), 1)
    codec.model.encoder, codec.model.decoder  # sessions are created lazily: include that in "load"
    t["load"] += median_time(lambda: (codec.model.encoder, codec.model.decoder), 1)[0]
    picture = from_array(rgb)
    codec.decode(codec.encode(picture))  # warm-up
    header = codec.header_for(picture)
    t["encoder"], analysed = median_time(lambda: codec.analyse(picture.rgb(), header), runs)
    # entropy coding: for format 3 models the hyper-synthesis (ẑ -> tables) and the FSE coder
    t["entropy_encode"], (tiles, z_chunks) = median_time(lambda: codec.code(analysed, header), runs)
    t["container_write"], data = median_time(lambda: container.write(header, tiles, picture.side_data, z_chunks), runs)
    t["container_read"], (parsed, model) = median_time(lambda: codec.parse(data), runs)
    t["entropy_decode"], values = median_time(lambda: latent_values(parsed, model), runs)
    t["decoder"], _ = median_time(lambda: synthesise(model, values, parsed.header), runs)
    assert np.array_equal(values, codec.encode_latents(picture))
    t["bytes"] = len(data)
    t["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if refine_steps:
        codec.analyse(picture.rgb(), header, 1)  # warm-up: creates the decoder_gradient session
        seconds, _ = median_time(lambda: codec.analyse(picture.rgb(), header, refine_steps), 1)
        t["refine_step"] = (seconds - t["encoder"]) / refine_steps  # the scorings of the hard rounding included
        t["refine_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return t


def cli_times(model, rgb, runs):
    """Wall time of the whole command-line tools, process start and model load included."""
    folder = tempfile.mkdtemp(prefix="l3ic-speed-")
    try:
        src = os.path.join(folder, "in.png")
        Image.fromarray(rgb).save(src)
        enc = [sys.executable, "-m", "runtime.encode", src, "-o", os.path.join(folder, "x.l3ic"), "-f", "-m", model]
        dec = [sys.executable, "-m", "runtime.decode", os.path.join(folder, "x.l3ic"), "-o", os.path.join(folder, "out.png"), "-f"]
        return {"cli_encode": median_time(lambda: subprocess.run(enc, check=True, capture_output=True, cwd=folder), runs)[0],
                "cli_decode": median_time(lambda: subprocess.run(dec, check=True, capture_output=True, cwd=folder), runs)[0]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def standard_codecs(rgb, runs):
    """Encode/decode times of the standard codecs' CLIs at a mid quality, where installed."""
    from benchmarks.codecs import STANDARD, available
    folder = tempfile.mkdtemp(prefix="l3ic-speed-")
    rows = {}
    try:
        src = os.path.join(folder, "in.png")
        Image.fromarray(rgb).save(src)
        for codec in STANDARD:
            if not available(codec):
                continue
            quality = codec.speed_quality
            enc_t, out = median_time(lambda: codec.encode(src, quality, folder), runs)
            dec_t, _ = median_time(lambda: codec.decode(out, folder), runs)
            rows[codec.name] = {"encode": enc_t, "decode": dec_t, "bpp": 8.0 * codec.stream_bytes(out) / rgb.shape[0] / rgb.shape[1]}
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
        ["cpu", "cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else ["cpu"])
    from l3ic.model import find_model
    models = [m for m in args.models.split(",") if _exists(find_model, m)]
    results = {"machine": machine(), "l3ic": [], "standard": {}}
    for size in args.sizes.split(","):
        rgb = test_image(SIZES[size], args.images)
        for model in models:
            for provider in providers:
                cmd = [sys.executable, "-m", "benchmarks.speed", "--worker", "--model", model, "--size", size,
                       "--provider", provider, "--runs", str(args.runs), "--refine-steps", str(args.refine_steps)] + (["--images", args.images] if args.images else [])
                row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                row.update({"model": model, "size": size, "provider": provider})
                if not args.no_cli and provider == "cpu":
                    row.update(cli_times(model, rgb, max(1, args.runs // 2)))
                results["l3ic"].append(row)
        if not args.no_cli:
            results["standard"][size] = standard_codecs(rgb, max(1, args.runs // 2))
    print_tables(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


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
    print()
    head = ("| model | size | provider | " + " | ".join(STAGES) +
            " | encode total | decode total | entropy share of decode | CLI enc | CLI dec | peak RSS |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in results["l3ic"]:
        enc = r["encoder"] + r["entropy_encode"] + r["container_write"]
        dec = r["container_read"] + r["entropy_decode"] + r["decoder"]
        share = (r["container_read"] + r["entropy_decode"]) / dec
        cells = ["%.1f" % (1000 * r[s]) for s in STAGES]
        cli = ["%.2f" % r[k] if k in r else "-" for k in ("cli_encode", "cli_decode")]
        print("| %s | %s | %s | %s | %.1f | %.1f | %.1f%% | %s | %s | %.0f MiB |" % (
            r["model"], r["size"], r["provider"], " | ".join(cells), 1000 * enc, 1000 * dec, 100 * share, cli[0], cli[1], r["peak_rss_mib"]))
    print("\n(stages in milliseconds, median of --runs; CLI columns in seconds, whole process; entropy share of "
          "decode = container read + entropy decode (FSE, and for format 3 the hyper-synthesis) / decode total)")
    refined = [r for r in results["l3ic"] if "refine_step" in r]
    if refined:
        print("\nencoder-side refinement (--refine), one run:\n")
        print("| model | size | provider | ms per step | peak RSS |\n|---|---|---|---|---|")
        for r in refined:
            print("| %s | %s | %s | %.0f | %.0f MiB |" % (r["model"], r["size"], r["provider"], 1000 * r["refine_step"], r["refine_peak_rss_mib"]))
    for size, rows in results["standard"].items():
        if rows:
            print("\nstandard codecs, %s (CLI, process start included):\n" % size)
            print("| codec | encode s | decode s | bpp |\n|---|---|---|---|")
            for name, r in rows.items():
                print("| %s | %.3f | %.3f | %.2f |" % (name, r["encode"], r["decode"], r["bpp"]))


if __name__ == "__main__":
    main()
