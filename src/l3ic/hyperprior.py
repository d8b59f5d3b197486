"""The entropy model of format 3: side information ẑ -> per-element mean and table index, exactly.

A format-3 model has a hyperprior (Ballé et al. 2018): the encoder sends ẑ, a
small integer map at 1/4 of the latent resolution, and both sides run the
*hyper-synthesis* on it to get, for every latent element, a mean μ (in
quarters) and a scale index k.  The latent ŷ (an integer of the codebook) is
coded as the symbol ŷ - base - codebook_min, base = floor(μ), with the static
FSE table of scale k and of μ's fractional quarter.  The index decides
how a symbol is decoded, so it must come out the same on every machine: the
hyper-synthesis is an integer network (Ballé, Johnston & Minnen 2019) with
integer kernels and biases, and each layer is

    out = clip(floor(acc * 2^shift + 1/2), lo, hi),  acc = Σ kernel · in + bias

over integers.  It runs here, in numpy float64: every product and partial sum
is an integer below 2^52 (``EntropyModel`` checks the bound when it loads a
model), so float64 adds and multiplies them exactly in any order — whatever
BLAS, SIMD width or FMA a machine uses — and the power-of-two scaling and the
floor are exact too.  ONNX Runtime is not used for it because its float32
kernels (and TF32 on GPUs) give no such guarantee.

A model trained for continuous quality (``l3ic.quality``) also stores gains:
per quality grid point an integer exponent m per channel.  A file made at
quality q codes round(g * y), g = r^m, and both sides turn the mean and scale
index of y into those of g * y exactly: the index moves m tables up, the mean
is multiplied by the stored integer round(r^m * 2^16) and rounded back to its
steps with a shift (``Gain``).

All of the entropy model lives in one file, ``entropy_model.npz``, hashed in
the model's manifest and in every file's model identity (see docs/FORMAT.md).
"""
from dataclasses import dataclass

import numpy as np

from l3ic import fse
from l3ic.errors import ModelError, first_line
from l3ic.quality import MAX_MODEL_QUALITY, QUALITY_SCALE

HALO = 3  # z cells of context around a tile: more than the hyper-synthesis's receptive field (2.5 cells)
EXACT_LIMIT = 2.0 ** 53
_LAYER_KEYS = ("kernel", "bias", "shift", "clip")
GAIN_KEYS = ("quality_grid", "default_quality", "gain_exponents", "gain_corrections", "gain_multipliers", "multiplier_bits")


@dataclass(frozen=True, eq=False)
class Gain:
    """The gains of one quality (``EntropyModel.gain``), per latent channel.

    ``quality``: q in hundredths; ``exponents`` (int64): the scale tables move this many steps; ``multipliers``
    (int64): means are multiplied by these, then shifted right by ``bits``
    (rounding half up); ``encoder`` (float32): the gain g = multiplier / 2^bits
    the encoder applies to y; ``inverse`` (float32): what the decoder network's
    input is multiplied by, the learned inverse gain: a correction (near 1) / g.
    """

    quality: int
    exponents: np.ndarray
    multipliers: np.ndarray
    bits: int
    encoder: np.ndarray
    inverse: np.ndarray

    def apply(self, latents):
        """The encoder's side: latents y (C, h, w) -> g * y, channel by channel (float32)."""
        return latents * self.encoder[:, None, None]

    def invert(self, values):
        """The decoder's side: coded values ŷ (C, h, w) -> what the decoder network takes, ŷ times the inverse gain
        (float32); also a gradient with respect to that input -> the gradient with respect to ŷ."""
        return values * self.inverse[:, None, None]


@dataclass(frozen=True, eq=False)
class Gains:
    """A model's gains (``GAIN_KEYS`` of its ``entropy_model.npz``): per quality grid point an integer exponent
    and an inverse-gain correction per channel; ``gain(q)`` interpolates them for any q of the grid's range.

    ``quality_grid``: the grid points (hundredths, increasing); ``default_quality``: the model's preset (hundredths);
    ``exponents`` (points, C) integers; ``corrections`` (points, C) floats; ``multipliers`` (2M + 1,) integers:
    the mean multiplier of exponent m - M; ``multiplier_bits``: the multipliers' fixed-point shift.  The arrays
    are kept as the file stores them: the integer arithmetic of ``interpolated`` depends on nothing else.
    """

    quality_grid: np.ndarray
    default_quality: int
    exponents: np.ndarray
    corrections: np.ndarray
    multipliers: np.ndarray
    multiplier_bits: int

    @classmethod
    def read(cls, arrays, channels):
        """The gains of an entropy model's arrays (``GAIN_KEYS``), checked against its ``channels``; ModelError
        where they do not fit the tables and channels, or could take the mean arithmetic near int64's limit."""
        try:
            gains = cls(arrays["quality_grid"], arrays["default_quality"], arrays["gain_exponents"],
                        arrays["gain_corrections"], arrays["gain_multipliers"], arrays["multiplier_bits"])
            ok = gains._valid(channels)
        except (ValueError, TypeError, IndexError) as e:
            raise ModelError("entropy model: invalid gains (%s)" % first_line(e))
        if not ok:
            raise ModelError("entropy model: invalid gains (quality grid, exponents, multipliers or corrections)")
        return gains

    def _valid(self, channels):
        grid, exponents, multipliers = self.quality_grid.astype(np.int64), self.exponents, self.multipliers
        integer = all(a.dtype.kind in "iu" and a.ndim == n for a, n in (
            (self.quality_grid, 1), (self.default_quality, 0), (exponents, 2), (multipliers, 1), (self.multiplier_bits, 0)))
        corrections = self.corrections
        return bool(integer and corrections.dtype.kind == "f" and len(grid) >= 2 and np.all(np.diff(grid) > 0)
                    and 0 <= grid[0] and grid[-1] <= MAX_MODEL_QUALITY * QUALITY_SCALE and grid[0] <= int(self.default_quality) <= grid[-1]
                    and exponents.shape == (len(grid), channels) and corrections.shape == exponents.shape
                    and len(multipliers) % 2 == 1 and np.all(np.abs(exponents) <= self.max_exponent)
                    and np.all(multipliers > 0) and int(multipliers.max()) < (1 << 40) and 0 <= int(self.multiplier_bits) <= 40
                    and np.all(np.isfinite(corrections)) and np.all(corrections > 0))

    @property
    def max_exponent(self):
        """M: the exponents -M..M have multipliers."""
        return (len(self.multipliers) - 1) // 2

    def gain(self, quality):
        """The ``Gain`` of a quality in hundredths inside the grid's range (``interpolated``)."""
        return self.gain_with(*self.interpolated(quality), quality)

    def interpolated(self, quality):
        """(exponents int64 (C,), corrections float64 (C,)) of a quality in hundredths inside the grid's range:
        between two grid points the exponents are interpolated linearly and rounded (channel by channel at
        staggered points) in integer arithmetic, the inverse gains' corrections geometrically."""
        grid = self.quality_grid
        if not grid[0] <= quality <= grid[-1]:
            raise ModelError("quality %g is outside this model's range %g..%g"
                             % (quality / QUALITY_SCALE, grid[0] / QUALITY_SCALE, grid[-1] / QUALITY_SCALE))
        b = min(max(int(np.searchsorted(grid, quality, side="left")), 1), len(grid) - 1)
        qa, qb, t = int(grid[b - 1]), int(grid[b]), int(quality) - int(grid[b - 1])
        ea, eb = self.exponents[b - 1].astype(np.int64), self.exponents[b].astype(np.int64)
        # the interpolation rounded with an offset (2c + 1) / 2C for channel c, so that between two grid points the
        # channels change their tables one by one rather than all at once (the file size moves in small steps)
        channels = len(ea)
        offsets = 2 * np.arange(channels, dtype=np.int64) + 1
        exponents = (2 * channels * (ea * (qb - qa - t) + eb * t) + (qb - qa) * offsets) // (2 * channels * (qb - qa))
        fraction = t / (qb - qa)
        ca, cb = self.corrections[b - 1].astype(np.float64), self.corrections[b].astype(np.float64)
        return exponents, ca ** (1.0 - fraction) * cb ** fraction

    def gain_with(self, exponents, corrections, quality=0):
        """The ``Gain`` of integer exponents (C,) and inverse-gain corrections (C,) at ``quality`` (hundredths): the
        inverse gain is the correction divided by the gain the exponent gives, so that they match."""
        exponents = np.asarray(exponents, np.int64)
        multipliers = self.multipliers[exponents + self.max_exponent]
        bits = int(self.multiplier_bits)
        gain = multipliers / 2.0 ** bits
        return Gain(int(quality), exponents, multipliers, bits, gain.astype(np.float32),
                    (np.asarray(corrections, np.float64) / gain).astype(np.float32))


class IntegerLayer:
    """One layer of the integer hyper-synthesis: a k x k convolution, rescale, clip, then depth-to-space."""

    def __init__(self, kernel, bias, shift, clip, depth_to_space=1):
        self.kernel = np.asarray(kernel, np.int64)  # (k, k, cin, cout)
        k, _, cin, cout = self.kernel.shape
        self.size, self.cin, self.cout = k, cin, cout
        self.bias = np.asarray(bias, np.int64).reshape(cout)
        self.scale = np.ldexp(1.0, np.asarray(shift, np.int64).reshape(cout))  # 2^shift per output channel
        self.lo, self.hi = (int(v) for v in clip)
        self.block = int(depth_to_space)
        self.matrix = self.kernel.reshape(k * k * cin, cout).astype(np.float64)
        if k % 2 != 1 or self.block not in (1, 2) or self.lo > self.hi or cout % (self.block * self.block):
            raise ModelError("entropy model: invalid layer (kernel %d, depth-to-space %d, clip %d..%d)" % (k, self.block, self.lo, self.hi))

    def accumulator_bound(self, input_bound):
        """The largest |acc| any input with |values| <= input_bound can give."""
        return float(np.max(np.abs(self.matrix).sum(axis=0) * input_bound + np.abs(self.bias)))

    def output_bound(self):
        return max(abs(self.lo), abs(self.hi))

    def __call__(self, x):
        """x: (cin, h, w) float64 integers -> (cout / block^2, h * block, w * block) float64 integers."""
        _, h, w = x.shape
        pad = self.size // 2
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
        # im2col: rows are positions, columns (ky, kx, cin) in the kernel's order
        cols = np.empty((h, w, self.size, self.size, self.cin))
        for ky in range(self.size):
            for kx in range(self.size):
                cols[:, :, ky, kx, :] = padded[:, ky:ky + h, kx:kx + w].transpose(1, 2, 0)
        acc = cols.reshape(h * w, -1) @ self.matrix + self.bias
        out = np.clip(np.floor(acc * self.scale + 0.5), self.lo, self.hi).T.reshape(self.cout, h, w)
        if self.block == 1:
            return out
        b, c = self.block, self.cout // (self.block * self.block)
        # TensorFlow's depth_to_space: input channel (dy * b + dx) * c + ch -> output (ch, b*y + dy, b*x + dx)
        return out.reshape(b, b, c, h, w).transpose(2, 3, 0, 4, 1).reshape(c, h * b, w * b)


def _check_layer(layer, input_bound, cin):
    if layer.cin != cin:
        raise ModelError("entropy model: a layer takes %d channels, its input has %d" % (layer.cin, cin))
    acc = layer.accumulator_bound(input_bound)
    if max(acc, acc * float(layer.scale.max())) >= EXACT_LIMIT / 2:
        raise ModelError("entropy model: a layer's accumulator can reach 2^52, where float64 is no longer exact")


class EntropyModel:
    """A model's hyperprior: the integer hyper-synthesis and the static FSE tables of y and z.

    ``parameters(z)`` gives the mean (in steps of 2^mean_exp) and the table
    index of every latent element; ``latent_tables`` codes residual symbols
    with those indices, ``z_tables`` codes channel c of ẑ with table c.
    """

    def __init__(self, path, channels, codebook_size):
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            self.layers = [IntegerLayer(*(arrays["hs%d_%s" % (i, key)] for key in _LAYER_KEYS), arrays["hs%d_depth_to_space" % i])
                           for i in range(int(arrays["hidden_layers"]))]
            self.mean_head = IntegerLayer(*(arrays["mean_" + key] for key in _LAYER_KEYS))
            self.scale_head = IntegerLayer(*(arrays["scale_" + key] for key in _LAYER_KEYS))
            self.mean_exp = int(arrays["mean_exp"])
            self.hyper_stride = int(arrays["hyper_stride"])
            self.z_min = int(arrays["z_min"])
            table_log = int(arrays["table_log"])
            self.latent_tables = fse.StaticTables(arrays["latent_counts"], table_log)
            # code length in bits of each residual symbol under each table (for refinement's rate)
            self.latent_bits = code_lengths(arrays["latent_counts"], table_log)
            self.z_tables = fse.StaticTables(arrays["z_counts"], table_log)
            gain_arrays = {k: arrays[k] for k in GAIN_KEYS} if "quality_grid" in arrays else None
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise ModelError("cannot read entropy model %s: %s" % (path, first_line(e)))
        self.z_channels = self.z_tables.n_tables
        self.phases = 2 ** -self.mean_exp  # tables per scale: one per fractional step of the mean
        self._check(channels, codebook_size)
        self.gains = None if gain_arrays is None else Gains.read(gain_arrays, channels)  # continuous quality

    @property
    def qualities(self):
        """(lowest, highest) quality in hundredths this model codes at, or None without gains."""
        return None if self.gains is None else (int(self.gains.quality_grid[0]), int(self.gains.quality_grid[-1]))

    @property
    def default_quality(self):
        """The quality (hundredths) an encode without one uses: the model's preset; None without gains."""
        return None if self.gains is None else int(self.gains.default_quality)

    @property
    def quality_grid(self):
        """The qualities (hundredths) the gains were trained at, int64 (n,); None without gains."""
        return None if self.gains is None else self.gains.quality_grid.astype(np.int64)

    def gain(self, quality):
        """The ``Gain`` of a quality in hundredths inside ``qualities`` (``Gains.gain``)."""
        return self.gains.gain(quality)

    def _check(self, channels, codebook_size):
        """Shapes fit together, heads fit the model, and every accumulator stays below 2^52 (exactness)."""
        bound, cin = max(abs(self.z_min), abs(self.z_min + self.z_tables.alphabet_size - 1)), self.z_channels
        for layer in self.layers:
            _check_layer(layer, bound, cin)
            bound, cin = layer.output_bound(), layer.cout // layer.block ** 2
        for head in (self.mean_head, self.scale_head):
            _check_layer(head, bound, cin)
        if max(abs(self.mean_head.lo), abs(self.mean_head.hi)) > (1 << 15):
            raise ModelError("entropy model: means %d..%d out of range" % (self.mean_head.lo, self.mean_head.hi))
        scale = 1
        for layer in self.layers:
            scale *= layer.block
        if scale != self.hyper_stride:
            raise ModelError("entropy model: the hyper-synthesis upsamples %dx, not the hyper stride %d" % (scale, self.hyper_stride))
        if self.mean_head.cout != channels or self.scale_head.cout != channels:
            raise ModelError("entropy model: heads give %d/%d channels, the model has %d" % (self.mean_head.cout, self.scale_head.cout, channels))
        if not (self.mean_exp <= 0 and self.scale_head.lo >= 0 and (self.scale_head.hi + 1) * self.phases <= self.latent_tables.n_tables):
            raise ModelError("entropy model: scale indices %d..%d x %d mean phases do not fit the %d tables"
                             % (self.scale_head.lo, self.scale_head.hi, self.phases, self.latent_tables.n_tables))
        if self.latent_tables.alphabet_size != codebook_size:
            raise ModelError("entropy model: latent tables have %d symbols, the codebook %d" % (self.latent_tables.alphabet_size, codebook_size))

    def parameters(self, z_symbols, gain=None):
        """ẑ symbols (Zc, zh, zw) uint8 -> (base int32, table index uint8), each (C, s*zh, s*zw).

        The hyper-synthesis gives a mean in steps of 2^mean_exp and a scale
        index; an element is coded as ŷ - base with table
        ``scale * phases + phase``, where base = floor(mean) and phase is the
        mean's fractional step.  With a ``Gain``, mean and index are those of
        the gained latent g * y: the mean times the channel's multiplier,
        shifted back (rounding half up) and clipped as the mean head clips,
        the index shifted by the exponent and clipped to the scale tables.
        """
        x = z_symbols.astype(np.float64) + self.z_min
        for layer in self.layers:
            x = layer(x)
        mean, scale = self.mean_head(x).astype(np.int64), self.scale_head(x).astype(np.int64)
        if gain is not None:
            half = (1 << gain.bits) >> 1
            mean = np.clip((mean * gain.multipliers[:, None, None] + half) >> gain.bits, self.mean_head.lo, self.mean_head.hi)
            scale = np.clip(scale + gain.exponents[:, None, None], self.scale_head.lo, self.scale_head.hi)
        mean, scale = mean.astype(np.int32), scale.astype(np.int32)
        shift = self.phases.bit_length() - 1  # phases is a power of two: floor division and modulo as bit operations
        return mean >> shift, ((scale << shift) | (mean & (self.phases - 1))).astype(np.uint8)

    def tile_origins(self, z_symbols, rect, gain=None, shifted=False):
        """(origin float32, table index uint8), each (C, h, w), of the latent rectangle rect = (y, x, h, w): what
        each element's symbol counts from, and its table.

        Plain rounding codes ŷ - base, base = floor(mean), with the table of
        the mean's scale and fractional step (``tile_parameters``).  A
        mean-shifted file (``container.FLAG_MEAN_SHIFT``) codes s = ŷ - mean,
        the mean itself (a multiple of 1/phases, exact in float32), with the
        scale's table of fractional step 0: ŷ = mean + s is then as fine as
        the mean, where plain rounding sends a flat area's latents to one
        integer together (an error of up to half a step over the whole area).
        """
        base, index = self.tile_parameters(z_symbols, rect, gain)
        if not shifted:
            return base.astype(np.float32), index
        phase = index & (self.phases - 1)
        return base.astype(np.float32) + phase.astype(np.float32) / self.phases, index - phase

    def tile_parameters(self, z_symbols, rect, gain=None):
        """``parameters`` for the latent rectangle rect = (y, x, h, w), from ẑ with HALO cells around it.

        Identical, bit for bit, to cutting the rectangle out of ``parameters``
        of the whole map (the halo covers the receptive field, and the window
        is the whole map at image borders), with memory and time in
        proportion to the tile.  Tile corners lie on multiples of the hyper stride.
        """
        y, x, h, w = rect
        s = self.hyper_stride
        zh, zw = z_symbols.shape[1:]
        zy0, zx0 = max(0, y // s - HALO), max(0, x // s - HALO)
        zy1, zx1 = min(zh, -(-(y + h) // s) + HALO), min(zw, -(-(x + w) // s) + HALO)
        base, index = self.parameters(z_symbols[:, zy0:zy1, zx0:zx1], gain)
        oy, ox = y - zy0 * s, x - zx0 * s
        return (np.ascontiguousarray(base[:, oy:oy + h, ox:ox + w]), np.ascontiguousarray(index[:, oy:oy + h, ox:ox + w]))


def code_lengths(counts, table_log):
    """Bits each symbol costs under FSE tables of normalized ``counts`` (K, L) of 2^table_log states, float64."""
    return table_log - np.log2(np.asarray(counts).astype(np.float64))
