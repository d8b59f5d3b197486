"""Where ``-q`` hands over from one model to the next: ``python -m benchmarks.qscale --images DIR --holdout 8``.

``l3ic.quality.SCALE`` cuts the ``-q`` scale into one stretch per model, each
mapped linearly onto part of that model's own q grid.  This measures what the
table must be, on photos held out of training (``--holdout``,
``--holdout-smooth``: the same images ``export.train`` keeps out; never the
evaluation set):

1. Each model encodes every photo over its whole grid (its own q, step
   ``--step``); each point is the mean PSNR and the mean log bpp (the
   geometric mean of the sizes: a step in q scales every file by a factor).
2. Two neighbouring models hand over where their curves cross: the lowest
   rate from which the larger model's PSNR stays at least the smaller's.  The
   two models' own q at that rate are the ends of their stretches, so the
   size and the PSNR run on at the switch, with no jump.
3. The stretches share 0..100 in proportion to the log rate each spans, so a
   step of q grows a file by about the same factor all along the scale.

It prints the curves, the switches and the proposed ``SCALE``.  ``--check``
then measures the scale in use, per photo, at q = 0, 2, ..., 100: the largest
growth of a file from one step to the next and the largest PSNR lost, which
the quality-range issue bounds at 15 % and none.  Photos are scaled to at
most ``--max-side`` pixels on their longer side, to keep the run short.
"""
import argparse
import dataclasses
import json

import numpy as np
from benchmarks.photos import held_out
from l3ic import image as images
from l3ic import quality
from l3ic.codec import CodecCache
from l3ic.model import QUALITIES
from l3ic.target import files_by_quality

CHECK_STEP = 2  # --check: the -q step the quality-range issue bounds ...
MAX_GROWTH = 1.15  # ... to this growth of a file, with no PSNR lost


def files_at(codec, picture, model_units):
    """(bytes, PSNR) of ``picture`` coded by ``codec`` at each of its own q (hundredths): the encoder network runs
    once, the decoder once per q."""
    base = codec.header_for(picture)
    analysed = codec.analyse(picture.rgb(), base)
    out = []
    for units in model_units:
        header = dataclasses.replace(base, quality=int(units))
        data = codec.write(picture, header, codec.quantise(analysed, header))
        out.append((len(data), images.psnr(picture.pixels, codec.decode(data))))
    return out


def curves(codecs, photos, step):
    """model -> {"q": its own q grid (0..100), "log_bpp" and "psnr": the means over photos, "per_photo": each
    photo's [log bpp, PSNR] at each q}."""
    result = {}
    for name in QUALITIES:
        lo, hi = codecs(name).model.entropy_model.qualities
        grid = np.unique(np.r_[np.arange(lo, hi, step * quality.QUALITY_SCALE), hi]).astype(int)
        rows = np.array([[(np.log(8.0 * size / (p.width * p.height)), dB) for size, dB in files_at(codecs(name), p, grid)]
                         for _, p in photos])  # (photos, grid, 2)
        result[name] = {"q": (grid / quality.QUALITY_SCALE).tolist(), "log_bpp": rows[:, :, 0].mean(0).tolist(),
                        "psnr": rows[:, :, 1].mean(0).tolist(), "per_photo": rows.tolist()}
        print("%s: %d points on %d photos" % (name, len(grid), len(photos)), flush=True)
    return result


def handover(small, large):
    """(log rate, small's own q, large's own q) where ``large`` takes over: the lowest rate of their common range
    from which large's PSNR stays at least small's (the top of the range if it never does)."""
    lo = max(small["log_bpp"][0], large["log_bpp"][0])
    hi = min(small["log_bpp"][-1], large["log_bpp"][-1])
    rates = np.linspace(lo, hi, 400)
    ahead = _psnr_at(large, rates) >= _psnr_at(small, rates)
    behind = np.flatnonzero(~ahead)
    rate = rates[0] if not len(behind) else rates[min(behind[-1] + 1, len(rates) - 1)]
    return rate, _q_at(small, rate), _q_at(large, rate)


def _psnr_at(curve, rates):
    return np.interp(rates, np.maximum.accumulate(curve["log_bpp"]), curve["psnr"])


def _q_at(curve, rate):
    return float(np.interp(rate, np.maximum.accumulate(curve["log_bpp"]), curve["q"]))


def proposed_scale(measured):
    """The ``SCALE`` the curves call for: (model, start, end, model_start, model_end) per model, the q of the
    -q scale on whole numbers and the models' own q to 0.1."""
    names = list(QUALITIES)
    switches = [handover(measured[small], measured[large]) for small, large in zip(names, names[1:])]
    bottom, top = measured[names[0]], measured[names[-1]]
    rates = [bottom["log_bpp"][0]] + [s[0] for s in switches] + [top["log_bpp"][-1]]
    cuts = np.round(100 * (np.array(rates) - rates[0]) / (rates[-1] - rates[0])).astype(int)
    starts = [bottom["q"][0]] + [s[2] for s in switches]
    stops = [s[1] for s in switches] + [top["q"][-1]]
    return [quality.Stretch(name, int(cuts[i]), int(cuts[i + 1]), round(starts[i], 1), round(stops[i], 1))
            for i, name in enumerate(names)], switches


def check(codecs, photos):
    """Per photo: the largest and smallest size ratio and the lowest PSNR change from one -q step to the next on the
    scale in use."""
    steps = range(0, 101, CHECK_STEP)
    rows = []
    for name, picture in photos:
        points = [(len(data), images.psnr(picture.pixels, codecs(model).decode(data)))
                  for model, data in ladder(codecs, picture, steps)]
        sizes, dBs = np.array(points).T
        growth, change = sizes[1:] / sizes[:-1], np.diff(dBs)
        rows.append((name, growth.max(), steps[int(growth.argmax()) + 1], growth.min(), steps[int(growth.argmin()) + 1],
                     change.min(), steps[int(change.argmin()) + 1]))
        print("| %s | %.3f (q %d) | %.3f (q %d) | %+.2f (q %d) |" % rows[-1], flush=True)
    return rows


def ladder(codecs, picture, steps):
    """(model, file) of ``picture`` at each q of ``steps`` as ``-q`` encodes it (``l3ic.target.files_by_quality``:
    each model's encoder network runs once)."""
    file_at = files_by_quality(picture, codecs)
    for q in steps:
        units = q * quality.Q_UNITS
        yield quality.model_for(units), file_at(units)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.qscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="the training folder (its held-out photos are measured)")
    p.add_argument("--holdout", type=int, default=8, help="as export.train --holdout (default 8)")
    p.add_argument("--holdout-smooth", type=int, default=0, help="also the N smooth photos of export.train "
                                                                 "--holdout-smooth N (default 0: the scale is for "
                                                                 "photos as they come, of which these are the extreme)")
    p.add_argument("--max-side", type=int, default=1024, help="scale photos down to this longer side (default 1024)")
    p.add_argument("--step", type=float, default=5.0, help="step over each model's own q grid (default 5)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.add_argument("--check", action="store_true", help="measure the scale in use instead, at every second q")
    p.add_argument("--json", help="also write the measured curves and the proposal here")
    args = p.parse_args(argv)
    photos = [(name, images.from_array(rgb)) for name, rgb in
              held_out(args.images, args.holdout, args.holdout_smooth, args.max_side)]
    codecs = CodecCache("cpu", threads=args.threads)
    if args.check:
        print("\nThe -q scale in use, per photo: the largest and smallest size ratio of one step of %d to the next, "
              "and the lowest PSNR change (target: 1..%.2f and no loss)\n" % (CHECK_STEP, MAX_GROWTH))
        print("| photo | largest growth | smallest growth | lowest PSNR change |\n|---|---|---|---|")
        rows = check(codecs, photos)
        print("\nover %d photos: growth %.3f..%.3f, lowest PSNR change %+.2f dB; %d photos over %.2f, %d shrinking, "
              "%d losing PSNR (%d by more than 0.1 dB)"
              % (len(rows), min(r[3] for r in rows), max(r[1] for r in rows), min(r[5] for r in rows),
                 sum(r[1] > MAX_GROWTH for r in rows), MAX_GROWTH, sum(r[3] < 1 for r in rows),
                 sum(r[5] < 0 for r in rows), sum(r[5] < -0.1 for r in rows)))
        return 0
    measured = curves(codecs, photos, args.step)
    for name, c in measured.items():
        print("\n%s (own q, geometric-mean bpp, mean PSNR): %s" % (name, ", ".join(
            "%g %.3f %.2f" % (q, np.exp(r), dB) for q, r, dB in zip(c["q"], c["log_bpp"], c["psnr"]))))
    scale, switches = proposed_scale(measured)
    for (small, large), (rate, q_small, q_large) in zip(zip(QUALITIES, QUALITIES[1:]), switches):
        print("\n%s -> %s at %.3f bpp: %s's own q %.1f, %s's %.1f" % (small, large, np.exp(rate), small, q_small, large, q_large))
    print("\nSCALE = (\n%s\n)" % "\n".join("    Stretch(%r, %d, %d, %g, %g)," % tuple(s) for s in scale))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"photos": [n for n, _ in photos], "curves": measured, "scale": [list(s) for s in scale]}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
