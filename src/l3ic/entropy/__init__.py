"""Entropy coding, the stage between the latents and the container: ŷ and ẑ to a file's chunks, and back.

One coder per bitstream format, chosen once per model (``coder_for``), each
with a symmetric ``encode(latents, header)`` -> (one ``container.TileChunks``
per tile, the ẑ chunk or None) and ``decode(parsed, channels, tiles)`` ->
ŷ, as in CompressAI's latent codecs:

* ``PerFileCoder`` (format 2, and format 1's files): each (tile, channel)
  chunk carries its own table, made from that chunk's histogram
  (``l3ic.fse.encode_channels``).
* ``ConditionalCoder`` (format 3): each element of ŷ is coded relative to the
  mean the hyperprior (``l3ic.hyperprior``) predicts from ẑ, with the static
  table of its predicted scale; ẑ itself is one chunk, with static tables or
  a table of its own where that is shorter.

Both decode ``read_latents``'s random access too (``decode_channels``).
"""
from l3ic.entropy.conditional import ConditionalCoder
from l3ic.entropy.per_file import PerFileCoder


def coder_for(model):
    """The entropy coder of a model's format: ``ConditionalCoder(model)`` for a model with a hyperprior
    (format 3), else ``PerFileCoder(model)``."""
    return (ConditionalCoder if model.has_hyperprior else PerFileCoder)(model)
