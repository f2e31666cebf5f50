"""Deprecated home of the MAT-Coding tasks, kept as a re-export for one release.

The code now lives in the package :mod:`arft_envs.tasks.coding` (one module per concept:
``official``, ``degrade``, ``gold``, ``scenes``, ``synthetic``, ``export``); import from there.
"""

from arft_envs.tasks.coding import (
    CONTENT_KINDS,
    INPUT_IMAGE,
    OUTPUT_IMAGE,
    PHOTOMETRIC,
    ROTATIONS,
    ROW_TYPES,
    SPLIT_CLASSES,
    SPLITS,
    Degradation,
    StepwiseSynthetic,
    SyntheticCoding,
    degrade,
    gold_plan,
    gold_steps,
    input_image_field,
    load_coding_rows,
    load_mat_coding,
    restore_code,
)

__all__ = [
    "CONTENT_KINDS",
    "INPUT_IMAGE",
    "OUTPUT_IMAGE",
    "PHOTOMETRIC",
    "ROTATIONS",
    "ROW_TYPES",
    "SPLITS",
    "SPLIT_CLASSES",
    "Degradation",
    "StepwiseSynthetic",
    "SyntheticCoding",
    "degrade",
    "gold_plan",
    "gold_steps",
    "input_image_field",
    "load_coding_rows",
    "load_mat_coding",
    "restore_code",
]
