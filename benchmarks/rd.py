"""Rate-distortion of l3ic against the standard codecs: ``python -m benchmarks.rd --images DIR --out results/NAME``.

Every image goes through every codec at every quality point (for l3ic: each
shipped model at its preset, or with ``--quality-step S`` the continuous
quality q = 0, S, 2S, ..., 100 of ``l3ic.quality``, which picks the model; with
``--refine N`` steps of encoder-side refinement); for each
we keep the real file size (bpp), RGB PSNR, MS-SSIM (as
``tf.image.ssim_multiscale``) and encode/decode time.  Results are cached
per (codec, setting, image) under ``results/NAME/cache`` so rerunning one codec
is cheap.  Writes ``results.json`` (per image and per quality point),
``summary.md`` (BD-rates on the mean curves, PSNR at 0.25/0.5/1 bpp) and the
plots ``rd_psnr.png`` / ``rd_msssim.png``.  ``--published`` adds l3ic's BD-rate against published mean curves
(CompressAI's Kodak results, ``benchmarks/reference/compressai-kodak.json``); l3ic's PSNR BD-rate against each
classical codec is also reported image by image, since the acceptance limits are per image.
"""
import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
from PIL import Image

from benchmarks.bdrate import bd_rate, metric_at_rate, overlap
from benchmarks.codecs import BY_NAME, available
from benchmarks.metrics import ms_ssim, ms_ssim_db, psnr
from l3ic.files import write_bytes_atomic
from l3ic.errors import ImageError
from l3ic.image import list_images, split_holdout, split_smooth

ALL_CODECS = ["l3ic", "jpeg", "webp", "jpeg2000", "avif", "jxl", "x265"]
L3IC_MODELS = ("low", "medium", "high")
REPORT_RATES = (0.25, 0.5, 1.0)
ANCHOR = "x265"
BASELINE = "l3ic-baseline"  # the l3ic curve of --baseline
PER_IMAGE_LIMITS = {"x265": 45.0}  # acceptance, PSNR BD-rate per image: at most +45 % against x265-444, below 0 % otherwise


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def settings_of(codec, quality, refine=0):
    """What identifies a result in the cache: for l3ic the q and the model's own q it maps to (the -q scale may
    change), the model's encoder and decoder hashes, the compiled entropy coder (a better coder changes the file
    sizes), the code of the gains (the entropy model) and of the tile coding and, with refinement, its steps,
    settings and code (refine, and the analysis and tiling that cut it into blocks), else the tool and setting."""
    if codec == "l3ic":
        from l3ic import fse, hyperprior
        from l3ic import quality as scale
        from l3ic.entropy import conditional
        from l3ic.model import Model
        model = Model(l3ic_options(quality).model, "cpu")
        point = quality if isinstance(quality, str) else "q%g-own%d" % (  # the model's own q: the -q scale may change
            quality, scale.to_model(model.name, scale.quality_units(quality)))
        key = "%s-%s-%s-%s%s" % (point, model.decoder_hash.hex()[:12],
                                 model.manifest["files"]["encoder.onnx"]["sha256"][:8],  # an encoder-only release
                                 file_digest(fse.EXTENSION_FILE)[:12], code_digest(hyperprior, conditional)[:6])
        if refine:  # the manifest's settings, the gradient graph and the refinement code all change the files
            from l3ic import analysis, refine as refinement, tiling
            from l3ic.refine import descent, rate
            settings = json.dumps([model.refine_parameters(), model.manifest["files"]["decoder_gradient.onnx"]["sha256"],
                                   code_digest(refinement, descent, rate, analysis, tiling)], sort_keys=True).encode()
            key += "-refine%d-%s" % (refine, hashlib.sha256(settings).hexdigest()[:8])
        return key
    return "%s" % quality


def code_digest(*modules):
    """A digest of the source of these modules: a change to any of them may change the files."""
    return hashlib.sha256("".join(file_digest(m.__file__) for m in modules).encode()).hexdigest()[:16]


def l3ic_options(quality, refine=0):
    """The ``EncodeOptions`` of an l3ic quality point: a preset's name (its model), or q (the model that serves it)."""
    from l3ic.options import EncodeOptions
    return EncodeOptions.validated(**({"model": quality} if isinstance(quality, str) else {"quality": quality}), refine=refine)


@functools.lru_cache(maxsize=None)
def l3ic_codecs():
    """The l3ic codecs of this process, one per model (l3ic is imported on first use)."""
    from l3ic.codec import CodecCache
    return CodecCache("cpu")


def measure(codec, quality, path, refine=0):
    """One (codec, quality, image) point."""
    reference = np.asarray(Image.open(path).convert("RGB"))
    pixels = reference.shape[0] * reference.shape[1]
    if codec == "l3ic":
        from l3ic.codec import encode_picture
        from l3ic.image import from_array
        options = l3ic_options(quality, refine)
        start = time.perf_counter()
        data = encode_picture(from_array(reference), options, l3ic_codecs()).data
        mid = time.perf_counter()
        decoded = l3ic_codecs()(options.model).decode(data)
        end = time.perf_counter()
        size = len(data)
    else:
        tool = BY_NAME[codec]
        folder = tempfile.mkdtemp(prefix="l3ic-rd-")
        try:
            start = time.perf_counter()
            out = tool.encode(path, quality, folder)
            mid = time.perf_counter()
            dec_path = tool.decode(out, folder)
            end = time.perf_counter()
            size = tool.stream_bytes(out)
            decoded = np.asarray(Image.open(dec_path).convert("RGB"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"image": os.path.basename(path), "codec": codec, "quality": quality, "bytes": size,
            "bpp": 8.0 * size / pixels, "psnr": psnr(reference, decoded), "ms_ssim": ms_ssim(reference, decoded),
            "encode_s": mid - start, "decode_s": end - mid}


def _task(args):
    codec, quality, path, cache_file, refine = args
    result = measure(codec, quality, path, refine)
    os.makedirs(os.path.dirname(cache_file), exist_ok=True)
    write_bytes_atomic(cache_file, json.dumps(result).encode(), overwrite=True)
    return result


def plan(codecs, images, cache, refine=0, quality_step=None, models=L3IC_MODELS):
    """All (codec, quality, image) tasks, split into cached results and work to do."""
    done, todo = [], []
    digests = {p: file_digest(p) for p in images}
    for codec in codecs:
        if codec != "l3ic":
            qualities = BY_NAME[codec].qualities
        elif quality_step:
            qualities = [float(q) for q in np.arange(0.0, 100.0 + 1e-9, quality_step)]
        else:
            qualities = [m for m in models if _model_exists(m)]
        for q in qualities:
            key = settings_of(codec, q, refine)
            for p in images:
                cache_file = os.path.join(cache, codec, key, digests[p] + ".json")
                if os.path.exists(cache_file):
                    with open(cache_file) as f:
                        done.append(json.load(f))
                else:
                    todo.append((codec, q, p, cache_file, refine))
    return done, todo


def _model_exists(name):
    from l3ic.model import find_model
    try:
        find_model(name)
        return True
    except Exception:
        return False


def aggregate(results):
    """Mean bpp / PSNR / MS-SSIM per (codec, quality), each image weighted equally."""
    curves = {}
    groups = {}
    for r in results:
        groups.setdefault((r["codec"], r["quality"]), []).append(r)
    for (codec, quality), rows in groups.items():
        ms = [r["ms_ssim"] for r in rows if r["ms_ssim"] is not None]
        point = {"quality": quality, "images": len(rows), "bpp": float(np.mean([r["bpp"] for r in rows])),
                 "psnr": float(np.mean([r["psnr"] for r in rows])),
                 "ms_ssim": float(np.mean(ms)) if ms else None,
                 "encode_s": float(np.mean([r["encode_s"] for r in rows])),
                 "decode_s": float(np.mean([r["decode_s"] for r in rows]))}
        point["ms_ssim_db"] = ms_ssim_db(point["ms_ssim"]) if ms else None
        curves.setdefault(codec, []).append(point)
    for points in curves.values():
        points.sort(key=lambda p: p["bpp"])
    return curves


def _curve(points, metric):
    pts = [p for p in points if p[metric] is not None]
    return [p["bpp"] for p in pts], [p[metric] for p in pts]


def bd_table(curves):
    """BD-rate (PSNR and MS-SSIM dB) of every codec against the anchor, and of l3ic against every codec."""
    table = {}
    for anchor in curves:
        for test in curves:
            if test == anchor or (anchor != ANCHOR and test != "l3ic"):
                continue
            row = {}
            for metric in ("psnr", "ms_ssim_db"):
                ra, da = _curve(curves[anchor], metric)
                rt, dt = _curve(curves[test], metric)
                row[metric] = bd_rate(ra, da, rt, dt)
            table["%s vs %s" % (test, anchor)] = row
    return table


def psnr_at_rates(curves):
    return {codec: {str(r): metric_at_rate(*_curve(points, "psnr"), r) for r in REPORT_RATES} for codec, points in curves.items()}


def reference_bd(curves, path):
    """PSNR BD-rate of l3ic against quoted reference curves (a JSON of PSNR at fixed rates)."""
    if not path or "l3ic" not in curves:
        return {}
    with open(path) as f:
        ref = json.load(f)
    rates, tested = _curve(curves["l3ic"], "psnr")
    return {name: bd_rate(ref["bpp"], values, rates, tested) for name, values in ref["psnr"].items()}


def _finite(value):
    """A number for JSON, None (null) for nan or inf: the standard has no NaN, and null reads as 'no value'."""
    return float(value) if value is not None and np.isfinite(value) else None


def bd_over_overlap(anchor, test, metric):
    """BD-rate of ``test`` against ``anchor`` (lists of points) on one metric, the quality interval it averages over, and
    the share of the test curve's own range that interval covers: a BD-rate over part of the curve is not extrapolated
    to the rest, so the coverage is reported with it.  None for all three when the curves share no interval."""
    ra, da = _curve(anchor, metric)
    rt, dt = _curve(test, metric)
    span = overlap(da, dt)
    if span is None:
        return None, None, None
    own = max(dt) - min(dt)
    return _finite(bd_rate(ra, da, rt, dt)), list(span), (span[1] - span[0]) / own


def load_published(path):
    """Published mean curves (CompressAI's format: bpp, psnr_rgb, linear ms_ssim_rgb per point) as rd's lists of points,
    MS-SSIM turned into dB as for the measured codecs; returns (source text, {name: points})."""
    try:
        with open(path) as f:
            ref = json.load(f)
        curves = {}
        for name, c in ref["curves"].items():
            ms = c.get("ms_ssim_rgb", c.get("ms_ssim")) or [None] * len(c["bpp"])
            psnrs = c.get("psnr_rgb", c.get("psnr")) or [None] * len(c["bpp"])
            curves[name] = sorted(({"bpp": float(b), "psnr": q, "ms_ssim_db": ms_ssim_db(m) if m is not None else None}
                                   for b, q, m in zip(c["bpp"], psnrs, ms, strict=True)), key=lambda p: p["bpp"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit("error: --published %s: not a file of published curves (%s)" % (path, e))
    return ref.get("source", ""), curves


def published_bd(curves, path):
    """BD-rate (PSNR and MS-SSIM dB) of l3ic against every published curve, with each one's overlap and coverage."""
    if not path or "l3ic" not in curves:
        return {}
    source, published = load_published(path)
    against = {}
    for name, points in published.items():
        row = {"overlap": {}, "coverage": {}}
        for metric in ("psnr", "ms_ssim_db"):
            row[metric], row["overlap"][metric], row["coverage"][metric] = bd_over_overlap(points, curves["l3ic"], metric)
        against[name] = row
    return {"file": path, "source": source, "against": against}


def per_image_curves(rows, codec):
    """Each image's own PSNR curve for one codec, as {image: points}; points without a finite PSNR (lossless) are dropped."""
    images = {}
    for r in rows:
        if r["codec"] == codec and r["psnr"] is not None and np.isfinite(r["psnr"]):
            images.setdefault(r["image"], []).append({"bpp": r["bpp"], "psnr": r["psnr"]})
    return images


def per_image_bd(rows):
    """PSNR BD-rate of l3ic against every measured classical codec, image by image ({image: {codec: percent}}), because
    the acceptance limits are per image and mean curves hide the worst images; None where a pair does not overlap."""
    tested = per_image_curves(rows, "l3ic")
    names = {r["codec"] for r in rows} - {"l3ic"}
    codecs = [c for c in ALL_CODECS if c in names] + sorted(names - set(ALL_CODECS))
    anchors = {c: per_image_curves(rows, c) for c in codecs}
    table = {}
    for image in sorted(tested):
        table[image] = {c: bd_over_overlap(anchors[c][image], tested[image], "psnr")[0] if image in anchors[c] else None
                        for c in codecs}
    return table


def per_image_summary(table):
    """Per codec: the worst (largest) and median per-image BD-rate, how many images break the acceptance limit, and how
    many had no overlap (no BD-rate: neither passed nor failed, so counted apart)."""
    codecs = list(dict.fromkeys(c for row in table.values() for c in row))
    stats = {}
    for codec in codecs:
        known = {image: row[codec] for image, row in table.items() if row.get(codec) is not None}
        limit = PER_IMAGE_LIMITS.get(codec, 0.0)
        worst = max(known, key=known.get) if known else None
        stats[codec] = {"images": sum(codec in row for row in table.values()), "worst": known.get(worst), "worst_image": worst,
                        "median": float(np.median(list(known.values()))) if known else None, "limit": limit,
                        "above_limit": sum(v > limit for v in known.values()), "no_overlap": sum(row.get(codec, 0) is None for row in table.values())}
    return stats


def _pct(value):
    return "%+.1f%%" % value if value is not None else "no overlap"


def published_markdown(published):
    lines = ["", "| l3ic BD-rate against published curves (%s; mean curves of the 24 Kodak images) | PSNR | MS-SSIM |"
             % published["file"], "|---|---|---|"]
    for name, row in published["against"].items():
        cells = []
        for m in ("psnr", "ms_ssim_db"):
            cover = row["coverage"][m]
            cells.append(_pct(row[m]) + (" (over %.0f%% of l3ic's range)" % (100 * cover) if cover is not None and cover < 0.995 else ""))
        lines.append("| %s | %s | %s |" % (name, *cells))
    return lines + ["", "Published curves: " + published["source"]]


def per_image_markdown(table, stats):
    codecs = list(stats)
    lines = ["", "| l3ic PSNR BD-rate per image against | worst | median | above limit | no overlap |", "|---|---|---|---|---|"]
    for c, s in stats.items():
        worst = "%s (%s)" % (_pct(s["worst"]), s["worst_image"]) if s["worst"] is not None else "-"
        median = _pct(s["median"]) if s["median"] is not None else "-"
        lines.append("| %s | %s | %s | %d/%d above %+.0f%% | %d |" % (c, worst, median, s["above_limit"], s["images"], s["limit"], s["no_overlap"]))
    lines += ["", "| image | %s |" % " | ".join("vs " + c for c in codecs), "|---|%s" % ("---|" * len(codecs))]
    lines += ["| %s | %s |" % (image, " | ".join(_pct(row.get(c)) for c in codecs)) for image, row in table.items()]
    return lines


def summary_markdown(curves, bd, at_rates, images, quoted, published=None, per_image=None):
    lines = ["RD on %d images (mean curves). BD-rate: pchip Bjontegaard; negative = fewer bits than the anchor." % images, ""]
    lines += ["| codec | PSNR @0.25 bpp | @0.5 | @1.0 | BD-rate vs %s (PSNR) | (MS-SSIM) |" % ANCHOR, "|---|---|---|---|---|---|"]
    for codec in curves:
        vs = bd.get("%s vs %s" % (codec, ANCHOR), {})
        cells = ["%.2f" % at_rates[codec][str(r)] if not np.isnan(at_rates[codec][str(r)]) else "-" for r in REPORT_RATES]
        bdc = ["%+.1f%%" % vs[m] if vs and not np.isnan(vs[m]) else ("0 (anchor)" if codec == ANCHOR else "-") for m in ("psnr", "ms_ssim_db")]
        lines.append("| %s | %s | %s | %s |" % (codec, " | ".join(cells), bdc[0], bdc[1]))
    l3ic_rows = [(k, v) for k, v in bd.items() if k.startswith("l3ic vs")]
    if l3ic_rows:
        lines += ["", "| l3ic BD-rate against | PSNR | MS-SSIM |", "|---|---|---|"]
        for k, v in l3ic_rows:
            lines.append("| %s | %s | %s |" % (k[len("l3ic vs "):], *["%+.1f%%" % v[m] if not np.isnan(v[m]) else "-" for m in ("psnr", "ms_ssim_db")]))
    if quoted:
        lines += ["", "| l3ic PSNR BD-rate against quoted curves (benchmarks/reference) | PSNR |", "|---|---|"]
        lines += ["| %s | %s |" % (k, "%+.1f%%" % v if not np.isnan(v) else "-") for k, v in quoted.items()]
    if published:
        lines += published_markdown(published)
    if per_image:
        lines += per_image_markdown(per_image, per_image_summary(per_image))
    if "l3ic" in curves:
        lines += ["", "| l3ic model | bpp | PSNR | MS-SSIM | MS-SSIM dB | encode s | decode s |", "|---|---|---|---|---|---|---|"]
        for p in curves["l3ic"]:
            lines.append("| %s | %.3f | %.2f | %.4f | %.2f | %.3f | %.3f |" % (p["quality"], p["bpp"], p["psnr"], p["ms_ssim"] or float("nan"),
                                                                        p["ms_ssim_db"] or float("nan"), p["encode_s"], p["decode_s"]))
    return "\n".join(lines) + "\n"


def baseline_curve(path):
    """The l3ic curve of an earlier results.json (earlier models, same images)."""
    try:
        with open(path) as f:
            return json.load(f)["curves"]["l3ic"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit("error: --baseline %s: not a results.json with an l3ic curve (%s)" % (path, e))


def plot(curves, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for metric, label, name in (("psnr", "RGB PSNR (dB)", "rd_psnr.png"), ("ms_ssim_db", "MS-SSIM (dB)", "rd_msssim.png")):
        fig, ax = plt.subplots(figsize=(7, 5))
        for codec, points in curves.items():
            x, y = _curve(points, metric)
            ax.plot(x, y, "o-" if codec.startswith("l3ic") else ".-", label=codec, linewidth=2.5 if codec == "l3ic" else 1)
        ax.set_xlim(0, 2.0)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)


def reused_points(path, codecs):
    """codec -> its per-image points in an earlier results.json, for the standard codecs of ``codecs`` it has."""
    try:
        with open(path) as f:
            points = json.load(f)["per_image"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit("error: --reuse %s: not a results.json with per-image points (%s)" % (path, e))
    reused = {}
    for r in points:
        if r.get("codec") in codecs and r["codec"] != "l3ic":
            reused.setdefault(r["codec"], []).append(r)
    return reused


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.rd", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of test images (e.g. the Kodak set)")
    p.add_argument("--holdout", type=int, help="only the N images of --images that export.train --holdout N "
                                             "validates on (held-out training-set photos)")
    p.add_argument("--holdout-smooth", type=int, help="instead, only the N smooth photos that export.train --holdout "
                                                    "H --holdout-smooth N keeps out (give the same --holdout H)")
    p.add_argument("--codecs", default=",".join(ALL_CODECS))
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--refine", type=int, default=0, help="steps of encoder-side refinement for the l3ic models (default 0: off)")
    p.add_argument("--models", default=",".join(L3IC_MODELS), help="the l3ic models measured at their presets "
                                                                 "(default: all three)")
    p.add_argument("--quality-step", type=float, help="l3ic at q = 0, STEP, ..., 100 (continuous quality) instead of "
                                                      "the three models' presets")
    p.add_argument("--reference", help="JSON of quoted PSNR-at-rate curves to compare l3ic with (e.g. benchmarks/reference/kodak.json)")
    p.add_argument("--published", help="JSON of published mean curves to compare l3ic with (CompressAI's format; "
                                       "benchmarks/reference/compressai-kodak.json, valid with the Kodak images)")
    p.add_argument("--reuse", help="results.json of an earlier run on the same images: its standard codecs' points "
                   "are taken as they are (their tools do not depend on l3ic), and those codecs not run again")
    p.add_argument("--baseline", help="results.json of an earlier run: its l3ic curve joins the tables and plots as "
                                      "l3ic-baseline, to measure what new models gained")
    args = p.parse_args(argv)
    reused = reused_points(args.reuse, args.codecs.split(",")) if args.reuse else {}
    codecs = []
    for c in args.codecs.split(","):
        if c != "l3ic" and c not in BY_NAME:
            raise SystemExit("error: unknown codec %s (known: %s)" % (c, ", ".join(ALL_CODECS)))
        if c != "l3ic" and c in reused:
            continue
        if c != "l3ic" and not available(BY_NAME[c]):
            print("note: %s skipped: %s not installed (apt-get install libjpeg-turbo-progs webp libopenjp2-tools "
                  "libavif-bin libjxl-tools ffmpeg)" % (c, "/".join(BY_NAME[c].tools)), file=sys.stderr)
            continue
        codecs.append(c)
    try:
        images = list_images(args.images, required=True)
        if args.holdout_smooth:  # the smooth photos export.train --holdout H --holdout-smooth N keeps out
            images = split_smooth(split_holdout(images, args.holdout or 0)[0], args.holdout_smooth)[1]
        elif args.holdout:
            images = split_holdout(images, args.holdout)[1]
    except ImageError as e:
        raise SystemExit("error: %s" % e)
    os.makedirs(args.out, exist_ok=True)
    results, todo = plan(codecs, images, os.path.join(args.out, "cache"), args.refine, args.quality_step,
                         args.models.split(","))
    names = {os.path.basename(p) for p in images}
    results += [r for codec in reused for r in reused[codec] if r["image"] in names]
    print("%d results cached, %d to compute" % (len(results), len(todo)), file=sys.stderr)
    if todo:
        from tqdm import tqdm
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(_task, t) for t in todo]
            for f in tqdm(as_completed(futures), total=len(futures), desc="rd", file=sys.stderr):
                results.append(f.result())
    curves = aggregate(results)
    if args.baseline:
        curves[BASELINE] = baseline_curve(args.baseline)
    bd, at_rates = bd_table(curves), psnr_at_rates(curves)
    quoted = reference_bd(curves, args.reference)
    published, per_image = published_bd(curves, args.published), per_image_bd(results)
    record = {"images": [os.path.basename(p) for p in images], "curves": curves, "bd_rate": bd,
              "psnr_at_bpp": at_rates, "bd_rate_vs_quoted": quoted, "bd_rate_vs_published": published,
              "per_image_bd_rate": per_image, "per_image_bd_summary": per_image_summary(per_image),
              "per_image": sorted(results, key=lambda r: (r["codec"], str(r["quality"]), r["image"]))}
    write_bytes_atomic(os.path.join(args.out, "results.json"), json.dumps(record, indent=1).encode(), overwrite=True)
    summary = summary_markdown(curves, bd, at_rates, len(images), quoted, published, per_image)
    write_bytes_atomic(os.path.join(args.out, "summary.md"), summary.encode(), overwrite=True)
    plot(curves, args.out)
    print(summary)


if __name__ == "__main__":
    main()
