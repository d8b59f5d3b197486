"""benchmarks.channels: a file truncated to its K most important channels is a real, smaller file of the same model."""
import numpy as np

from benchmarks.channels import keep_channels
from l3ic import read_latents


def test_truncated_file_decodes_like_a_channel_subset(codec, sample):
    data = codec.encode(sample)
    k = codec.model.channels // 2
    truncated = keep_channels(data, k)
    assert len(truncated) < len(data)
    np.testing.assert_array_equal(read_latents(truncated)[:k], read_latents(data)[:k])
    # the dropped channels hold the neutral value: the hyperprior's mean (format 3), which a subset decode also uses
    parsed, coder = codec.parse(data)
    coded = coder.decode(parsed, range(k))  # ŷ as coded, before inverse gains
    np.testing.assert_array_equal(read_latents(truncated)[k:], coded[k:])
    np.testing.assert_array_equal(codec.decode(truncated), codec.decode(data, channels=range(k)))


def test_keeping_every_channel_changes_nothing(codec, sample):
    data = codec.encode(sample)
    assert keep_channels(data, codec.model.channels) == data
