"""Fit a model's static latent tables to what it codes: ``python -m export.fit_tables models/NAME --out runs/tables-NAME``.

A format-3 model codes each latent element with one of K static FSE tables,
chosen by the scale index and mean phase its hyperprior gives
(``l3ic.hyperprior``).  Training measures the rate with a Gaussian of that
scale (``export.hyperprior.residual_bits``), so export builds table k from
that Gaussian.  But the residuals of real photos are not quite Gaussian (their
tails are heavier), and a scale index is a rounded estimate: what a table
should hold is the distribution of the symbols that are actually coded with it.

This counts those: every training photo (the held-out ones left out) goes
through the installed model as the runtime runs it (the ONNX encoder, the
integer hyper-synthesis, the gains of every grid point of the model), and each
element adds its symbol to its table's histogram.  Table k becomes

    p_k = (histogram_k + prior * gaussian_k) / (its sum)

normalised to FSE counts as before (``export.hyperprior.table_counts``):
``--prior`` pseudo-counts of the Gaussian keep rarely used tables and unseen
symbols where training put them.  Nothing else changes: the same symbols and
index maps, so the same decoded pixels, in fewer bits.  It reports the ideal
code length of the training and of the held-out photos' symbols under the old
and the new tables.

The result is a run folder that exports like any training run, keeping the
model's ONNX graphs (``export.to_onnx``): ``fit.json`` (the histograms' totals
and the code lengths), ``latent_counts.npy`` (the new tables), ``config.json``
and ``checkpoint/`` (the released weights).
"""
import argparse
import json
import os
import shutil
import time

import numpy as np

from export import data
from export.to_onnx import LATENT_COUNTS, write_json


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m export.fit_tables", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="installed format-3 model with gains (models/NAME, or its name)")
    p.add_argument("--data", default="../shared/datasets/train", help="training photos (never evaluation images)")
    p.add_argument("--holdout", type=int, default=8, help="photos left out, as export.train --holdout")
    p.add_argument("--images", type=int, default=0, help="use this many random training photos (0: all)")
    p.add_argument("--prior", type=float, default=100.0, help="pseudo-counts of each table's Gaussian")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--out", required=True, help="run folder to write (runs/tables-NAME)")
    return p.parse_args(argv)


def symbol_histogram(codec, paths):
    """(K, L) counts of the residual symbols each static table would code, over the photos and every quality of the
    model's grid (the analysis is the same at every quality: only the gains differ)."""
    from l3ic import image as images
    m = codec.model
    em = m.entropy_model
    counts = np.zeros(em.latent_bits.shape, np.int64)
    for path in paths:
        picture = images.load(path, codec.max_pixels, strip=True)
        analysed = codec.analyse(picture.rgb(), codec.header_for(picture))
        channels, h, w = analysed.latents.shape
        for units in em.quality_grid:
            gain = em.gain(int(units))
            latents = analysed.quantised(m, gain, shifted=True)  # as files code them, with their origins and tables
            (origin, index), values = latents.origins, latents.values
            symbols = np.rint(values - origin - m.codebook_min).astype(np.int64)
            coded = (symbols >= 0) & (symbols < m.codebook_size)  # the others are coded adaptively
            np.add.at(counts, (index[coded].astype(np.int64), symbols[coded]), 1)
    return counts


def ideal_bits(histogram, bits):
    """Code length in bits of the symbols of ``histogram`` under tables whose symbols cost ``bits`` (K, L)."""
    return float(np.sum(histogram * bits))


def fitted_counts(histogram, prior, codebook):
    """The tables: histograms plus ``prior`` pseudo-counts of the Gaussian tables, as FSE normalized counts."""
    from export.hyperprior import gaussian_table_probabilities, table_counts
    gaussian = gaussian_table_probabilities(codebook)
    gaussian = gaussian / gaussian.sum(axis=1, keepdims=True)
    return table_counts(histogram + prior * gaussian)


def write_run(args, folder, record, counts):
    """``config.json``, ``checkpoint/`` (the released weights of the model ``folder`` as they are) and
    ``latent_counts.npy`` of the run."""
    keras_folder = os.path.join(folder, "keras")
    with open(os.path.join(keras_folder, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(folder, "manifest.json")) as f:
        training = json.load(f).get("training", {})
    checkpoint = os.path.join(args.out, "checkpoint")
    os.makedirs(checkpoint, exist_ok=True)
    shutil.copyfile(os.path.join(keras_folder, "model.weights.h5"), os.path.join(checkpoint, "model.weights.h5"))
    write_json(os.path.join(checkpoint, "state.json"), {"step": 0})
    np.save(os.path.join(args.out, LATENT_COUNTS), counts)
    run = {k: v for k, v in config.items() if k != "total_steps"}
    run.update(data=os.path.abspath(args.data), holdout=args.holdout, distortion=training.get("distortion", "mse"),
               train_images=record["images"], init={"folder": keras_folder, "total_steps": config.get("total_steps")},
               gain_fit=training.get("gain_fit"),
               latent_tables={k: record[k] for k in ("images", "prior", "seed", "symbols", "train_bits", "holdout_bits")})
    write_json(os.path.join(args.out, "config.json"), run)


def main(argv=None):
    args = parse_args(argv)
    from export.quantizer import Codebook
    from l3ic import Codec
    from l3ic.hyperprior import code_lengths
    from l3ic.model import find_model
    folder = find_model(args.model)
    codec = Codec(folder, "cpu", threads=args.threads)
    em = codec.model.entropy_model
    if not codec.model.has_hyperprior or em.quality_grid is None:
        raise SystemExit("error: %s is not a format-3 model with gains" % args.model)
    train, held_out = data.split_holdout(data.image_paths(args.data), args.holdout)
    if args.images:
        rng = np.random.default_rng(args.seed)
        train = [train[i] for i in sorted(rng.choice(len(train), min(args.images, len(train)), replace=False))]
    t0 = time.time()
    histogram = symbol_histogram(codec, train)
    held = symbol_histogram(codec, held_out)
    counts = fitted_counts(histogram, args.prior, Codebook(codec.model.codebook_min, codec.model.codebook_size))
    old, new = em.latent_bits, code_lengths(counts, em.latent_tables.table_log)
    record = {"images": len(train), "prior": args.prior, "seed": args.seed, "symbols": int(histogram.sum()),
              "train_bits": [ideal_bits(histogram, old), ideal_bits(histogram, new)],
              "holdout_bits": [ideal_bits(held, old), ideal_bits(held, new)],
              "seconds": round(time.time() - t0, 1)}
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "fit.json"), record)
    write_run(args, folder, record, counts)
    for name in ("train", "holdout"):
        before, after = record[name + "_bits"]
        print("%s photos: %.0f -> %.0f bits of latents (%+.2f %%)" % (name, before, after, 100.0 * (after / before - 1)))
    print("wrote %s: export it with python -m export.to_onnx %s --out %s" % (args.out, args.out, args.model))


if __name__ == "__main__":
    main()
