"""MAT-Coding tasks: the official files, the degradation model, and a synthetic generator.

A MAT-Coding item is an image, possibly degraded, and a question about the text in it. The
agent names the degradation (``<problem>{'rotation90', 'dark'}</problem>``), writes OpenCV code
that restores the image (it reads ``path_to_input_image.jpg`` and writes
``path_to_output_image.jpg``), and answers. The degradations are the paper's: ``rotation90``,
``rotation180``, ``dark``, ``overexposure``, ``blur``, ``noise``, ``crop`` (the question names
a region by a bounding box on a 0–1000 scale, and the input image is the undegraded one),
``none``, and a rotation combined with one of dark, overexposure, blur or noise.

One module per concept:

- :mod:`.official`: the benchmark and stepwise-row loaders, and the splits;
- :mod:`.degrade`: :class:`Degradation`, :func:`degrade` and :func:`restore_code`;
- :mod:`.gold`: the gold plan and the prose of each gold turn;
- :mod:`.scenes`: the synthetic pictures of text and the degradations drawn for them;
- :mod:`.synthetic`: :class:`SyntheticCoding` and its stepwise view;
- :mod:`.export`: writing a source out in both file formats, which the loaders read back;
- :mod:`.easy`: :class:`EasyCoding`, the easy setting the demo trains on (``EasyMATCoding-v0``).
"""

from arft_envs.tasks.coding import export
from arft_envs.tasks.coding.degrade import (
    INPUT_IMAGE,
    OUTPUT_IMAGE,
    PHOTOMETRIC,
    ROTATIONS,
    Degradation,
    degrade,
    restore_code,
)
from arft_envs.tasks.coding.easy import EasyCoding
from arft_envs.tasks.coding.gold import gold_plan, gold_steps
from arft_envs.tasks.coding.official import (
    ROW_TYPES,
    SPLIT_CLASSES,
    SPLITS,
    input_image_field,
    load_coding_rows,
    load_mat_coding,
)
from arft_envs.tasks.coding.scenes import CONTENT_KINDS
from arft_envs.tasks.coding.synthetic import StepwiseSynthetic, SyntheticCoding

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
    "EasyCoding",
    "StepwiseSynthetic",
    "SyntheticCoding",
    "degrade",
    "export",
    "gold_plan",
    "gold_steps",
    "input_image_field",
    "load_coding_rows",
    "load_mat_coding",
    "restore_code",
]
