"""Shared fixtures: the shipped default model, the bundled sample, small generated images."""
import os

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "samples", "rose.png")

# The fast tier, ``pytest -m "not slow" tests``: the runtime's tests, without TensorFlow, in well under a minute on
# 2 cores.  "slow" = needs TensorFlow (whole modules here, or marked in their module) or takes more than a few
# seconds; CI runs everything (``pytest -q tests``).
SLOW_MODULES = {"test_export.py", "test_fit_tables.py", "test_quantizer.py", "test_readme_commands.py"}
SLOW_TESTS = {  # module::test (all its parameters); measured, 2 cores: ~1 s or more each
    "test_metrics.py::test_ms_ssim_matches_tensorflow",
    "test_refine.py::test_refinement_gives_a_better_rate_distortion_trade_off",
    "test_refine.py::test_refinement_of_a_tiled_image_decodes_like_any_file",
    "test_refine.py::test_cli_refine_writes_a_smaller_or_better_file_and_rejects_negative_steps",
    "test_fuzz.py::test_fixed_seed_fuzz_finds_nothing",
    "test_fuzz.py::test_hard_crashes_are_caught_in_a_child_process",
    "test_tiles.py::test_tiled_matches_whole_image",
    "test_tiles.py::test_region_decode_matches_the_full_decode",
    "test_tiles.py::test_tiled_file_round_trips_channel_subsets",
    "test_quality.py::test_batch_with_target",
    "test_quality.py::test_the_command_line_and_pillow_take_numbers",
    "test_quality.py::test_a_target_below_the_range_gives_the_smallest_file_and_a_note",
    "test_cli.py::test_side_data_through_the_tools",
    "test_cli.py::test_default_decode_output_is_not_the_source",
    "test_cli.py::test_max_pixels_reaches_the_bitstream_reader",
    "test_cli.py::test_decode_writes_fast_pngs_unless_asked_for_small_ones",
    "test_cli.py::test_info_of_several_files_and_errors_that_name_the_file",
    "test_batch.py::test_existing_outputs_are_per_file_errors",
    "test_batch.py::test_outputs_next_to_inputs_globs_and_formats",
    "test_batch.py::test_decode_folder_with_a_corrupt_file",
    "test_channels.py::test_truncated_file_decodes_like_a_channel_subset",
    "test_command.py::test_export_tools_without_tensorflow_say_what_to_install",  # imports export.train, to_onnx
    "test_small_images.py::test_every_tiny_image_round_trips",
    "test_fit_gains.py::test_the_search_costs_what_files_at_that_quality_code",
    "test_fit_gains.py::test_a_fit_keeps_the_preset_and_resumes",
}


def _deselects_slow(config):
    """Whether ``-m`` deselects tests marked slow (and nothing else), e.g. ``-m "not slow"``."""
    expression = config.getoption("markexpr", "")
    if not expression:
        return False
    try:
        from _pytest.mark.expression import Expression
        return not Expression.compile(expression).evaluate(lambda name, **kwargs: name == "slow")
    except Exception:  # pytest's private API changed: collect everything, deselect as usual
        return False


def pytest_ignore_collect(collection_path, config):
    """A fast run does not even import the slow modules (test_export.py alone would import TensorFlow: ~7 s)."""
    if collection_path.name in SLOW_MODULES and _deselects_slow(config):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.name
        if module in SLOW_MODULES or "%s::%s" % (module, getattr(item, "originalname", item.name)) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def codec():
    from l3ic import Codec
    return Codec("medium", "cpu")


@pytest.fixture(scope="session")
def codecs():
    """codecs(name): the Codec of any model, each made once."""
    from l3ic.codec import CodecCache
    return CodecCache("cpu")


@pytest.fixture(scope="session")
def sample():
    return np.asarray(Image.open(SAMPLE).convert("RGB"))


def photo_like(height, width, seed=0):
    """A smooth synthetic image with edges: gradients plus a few discs and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [a * yy / max(height, 1) + b * xx / max(width, 1) + c for a, b, c in rng.uniform([-80, -80, 60], [80, 80, 190], (3, 3))]
    image = np.stack(planes, axis=2)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, max(3, min(height, width) / 3))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
