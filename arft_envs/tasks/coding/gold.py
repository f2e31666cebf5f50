"""The gold trajectory of a MAT-Coding item: its step plan and the prose of each strict-format turn.

:func:`gold_plan` says which steps an item needs (no code step for an undegraded image);
:func:`gold_steps` writes those turns: the diagnosis and ``<problem>`` set, the plan and the
``<code>`` that really restores the image, then the reading and the ``<answer>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from arft_envs.tasks.coding.degrade import PHOTOMETRIC, ROTATIONS, Degradation, restore_code


def gold_plan(degradations: Sequence[str]) -> list[str]:
    """The gold step kinds of an item: no code step when the image needs no processing."""
    if list(degradations) == ["none"]:
        return ["problem", "answer"]
    return ["problem", "code", "answer"]


_SEEN = {
    "rotation90": {
        "cw": "the lines of text run from top to bottom, so the picture was turned 90 degrees "
        "clockwise",
        "ccw": "the lines of text run from bottom to top, so the picture was turned 90 degrees "
        "counter-clockwise",
    },
    "rotation180": "the text is upside down, so the picture was turned by 180 degrees",
    "dark": "it is far too dark and the text barely stands out",
    "overexposure": "it is washed out and far too bright, leaving the text with little contrast",
    "blur": "the strokes of the letters are smeared, so it is blurred",
    "noise": "it is covered in grainy noise that hides the strokes",
    "crop": "the question asks about one small region, given as a box on a 0-1000 scale",
    "none": "it is upright, evenly lit, sharp and clean",
}
_FIX = {
    "rotation90": "rotate it 90 degrees {way} to make the text upright",
    "rotation180": "rotate it by 180 degrees",
    "dark": "brighten it {gain:.1f} times with convertScaleAbs",
    "overexposure": "pull the tones {gain:.1f} times further away from white",
    "blur": "sharpen it with an unsharp mask",
    "noise": "{denoise}",
    "crop": "convert the box to pixels, crop that region and enlarge it twice",
}


def _diagnosis(d: Degradation) -> str:
    parts = []
    for name in d.names:
        seen = _SEEN[name]
        parts.append(seen[d.rotation] if isinstance(seen, dict) else seen)
    if len(parts) == 1:
        return f"Looking at the image, {parts[0]}."
    return f"Looking at the image, {parts[0]}. Besides, {parts[1]}."


def _plan(d: Degradation) -> str:
    way = {"cw": "counter-clockwise", "ccw": "clockwise"}.get(d.rotation or "", "")
    denoise = (
        "remove the noise with non-local means denoising"
        if d.noise == "gaussian"
        else "remove the salt-and-pepper specks with a median filter"
    )
    order = ["crop", *ROTATIONS, *PHOTOMETRIC]
    fixes = [
        _FIX[n].format(way=way, gain=d.gain, denoise=denoise)
        for n in sorted(d.names, key=order.index)
    ]
    return "I will " + ", then ".join(fixes) + ", and save the result."


def _problem_set(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"'{n}'" for n in names) + "}"


def gold_steps(d: Degradation, answer: str) -> list[str]:
    """The gold turns, each in the paper's strict format: problem, code (unless none), answer."""
    steps = [f"<think> {_diagnosis(d)} </think>\n<problem> {_problem_set(d.names)} </problem>"]
    if "code" in gold_plan(d.names):
        steps.append(
            f"<think> {_plan(d)} </think>\n<code>\n```python\n{restore_code(d)}\n```\n</code>"
        )
        seen = (
            "Now the region is large enough to read"
            if "crop" in d.names
            else "Now the image is clear"
        )
    else:
        seen = "The image needs no fixing"
    steps.append(
        f"<think> {seen}, and the text reads: {answer}. </think>\n<answer> {answer} </answer>"
    )
    return steps
