"""Benchmark scoring of prediction files with the paper's metric (its result tables).

A prediction file is a JSON list of items with ``pred_answer`` (str or null) and ``gt`` (a str
or a list of str). Scores are averaged over the full item count (×100). When every item
records its ``split`` (``arft eval`` writes it, beside the task ``id``), the scores by split
come from those; otherwise (the released Visual-ARFT files) the MAT benchmarks use the
paper's fixed simple/hard slices of the official order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from arft_envs.rewards import score_answer

# benchmark -> (uses the Chinese-aware normaliser, number of "simple" items or None)
BENCHMARKS: dict[str, tuple[bool, int | None]] = {
    "mat-search": (False, 75),
    "mat-coding": (True, 70),
    "multihop": (False, None),
}
EXPECTED_SIZES = {"mat-search": 150, "mat-coding": 200}
_SPLIT_ORDER = {"simple": 0, "hard": 1}


class PredictionFileError(ValueError):
    """A prediction file that cannot be scored; the message names the file, row and field."""


@dataclass
class SplitScore:
    f1: float
    em: float
    n: int


@dataclass
class Score:
    benchmark: str
    overall: SplitScore
    splits: dict[str, SplitScore] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        rows = [("all", self.overall), *self.splits.items()]
        lines = [f"{'split':<8} {'n':>7} {'F1':>7} {'EM':>7}"]
        lines += [f"{name:<8} {s.n:>7} {s.f1:>7.2f} {s.em:>7.2f}" for name, s in rows]
        return "\n".join([*lines, *(f"warning: {w}" for w in self.warnings)])


def load_predictions(path: str | Path) -> list[dict]:
    """Read and validate a prediction file; errors name the file, row and field."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PredictionFileError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PredictionFileError(f"{path}: not valid JSON ({err})") from None
    if isinstance(items, dict) and isinstance(items.get("predictions"), list):
        items = items["predictions"]
    if not isinstance(items, list):
        raise PredictionFileError(f"{path}: expected a JSON list of predictions")
    for row, item in enumerate(items):
        if not isinstance(item, dict):
            raise PredictionFileError(f"{path}: row {row}: expected an object, got {item!r:.60}")
        for key in ("pred_answer", "gt"):
            if key not in item:
                raise PredictionFileError(f"{path}: row {row}: missing field {key!r}")
        pred = item["pred_answer"]
        if pred is not None and not isinstance(pred, str):
            raise PredictionFileError(
                f"{path}: row {row}: field 'pred_answer' must be a string or null"
            )
        if "split" in item and not isinstance(item["split"], str):
            raise PredictionFileError(f"{path}: row {row}: field 'split' must be a string")
        gt = item["gt"]
        if not (
            isinstance(gt, str) or (isinstance(gt, list) and all(isinstance(g, str) for g in gt))
        ):
            raise PredictionFileError(
                f"{path}: row {row}: field 'gt' must be a string or a list of strings"
            )
    return items


def _average(scores: list[tuple[float, float]]) -> SplitScore:
    n = len(scores)
    if n == 0:
        return SplitScore(0.0, 0.0, 0)
    return SplitScore(100 * sum(f for f, _ in scores) / n, 100 * sum(e for _, e in scores) / n, n)


def score_predictions(items: list[dict], benchmark: str) -> Score:
    """Score validated prediction items for ``benchmark`` (mat-search, mat-coding, multihop)."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {sorted(BENCHMARKS)}")
    chinese, n_simple = BENCHMARKS[benchmark]
    scores = [score_answer(item["pred_answer"], item["gt"], chinese=chinese) for item in items]
    result = Score(benchmark, _average(scores))
    recorded = [item.get("split") for item in items]
    if items and all(isinstance(split, str) for split in recorded):
        by_split: dict[str, list[tuple[float, float]]] = {}
        for split, score in zip(recorded, scores, strict=True):
            by_split.setdefault(split, []).append(score)
        order = sorted(by_split, key=lambda s: (_SPLIT_ORDER.get(s, len(_SPLIT_ORDER)), s))
        result.splits = {split: _average(by_split[split]) for split in order}
    elif any(isinstance(split, str) for split in recorded):
        missing = next(i for i, split in enumerate(recorded) if not isinstance(split, str))
        result.warnings.append(
            f"some items record their split and some (e.g. row {missing}) do not; the "
            "scores by split ignore the recorded splits"
        )
    if n_simple is not None and not result.splits:
        result.splits = {"simple": _average(scores[:n_simple]), "hard": _average(scores[n_simple:])}
        expected = EXPECTED_SIZES[benchmark]
        if len(items) != expected:
            result.warnings.append(
                f"{benchmark} has {expected} items but the file has {len(items)}; "
                "the simple/hard slices assume the official order"
            )
    return result


def score_file(path: str | Path, benchmark: str) -> Score:
    """Load and score one prediction file."""
    return score_predictions(load_predictions(path), benchmark)
