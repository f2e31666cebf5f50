"""Paper-faithful metrics and reward functions (Visual-ARFT, arXiv 2505.14246).

Everything here is a pure function of plain values. Two families live side by side:

- **Evaluation metrics** (:func:`score_answer`): SQuAD-style normalisation, token-*set* F1 and
  exact match, the maximum over gold answers, and F1 = 1 whenever EM = 1. With
  ``chinese=True`` the MAT-Coding normaliser also removes Chinese punctuation and, for text
  with CJK characters, drops ASCII spaces only (keeping articles and newlines); F1 then uses
  characters as tokens for both sides when either side has CJK characters.
- **Training rewards** (the ``*_reward`` functions): the per-step accuracy and format rewards
  of the paper's GRPO scripts, including their quirks (non-DOTALL span extraction with a
  whole-string fallback, ``fullmatch`` format checks, the 0.9 code constant, the rotation half
  credit, the 0.5 similarity threshold). See ``shared/research/paper.md`` §3.
- **Live search weights** (:func:`live_search_components`, :func:`live_answer_components`):
  ``reward_mode="live"`` reweights the search envs' terms so that the best return needs the
  right answer; the table beside those functions sets them against the paper's.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

# ----------------------------------------------------------------------------- normalisation

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)
# The MAT-Coding evaluation's own Chinese punctuation list (full-width ASCII-like forms, the
# halfwidth ideographic full stop, curly quotes, 、。《》【】); nothing else is stripped: not the
# ideographic space U+3000, '°', '…', '—', '·' or 「」.
CHINESE_PUNCTUATION = frozenset(
    "！？｡＂＃＄％＆＇（）＊＋，－．／：；＜＝＞＠［＼］＾＿｀｛｜｝～“”‘’、。：《》【】"
)
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop ASCII punctuation and articles, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def normalize_answer_zh(text: str) -> str:
    """MAT-Coding normalisation, exactly as the paper's evaluation does it.

    Lower-case, then drop ASCII punctuation and :data:`CHINESE_PUNCTUATION`. Then:

    - text with a CJK character (U+4E00–U+9FFF): remove every ASCII space ``" "`` and nothing
      else; articles are *kept* and other whitespace (``\\n``, ``\\t``, U+3000) stays as is;
    - other text: remove the articles a/an/the and collapse whitespace, as SQuAD does.
    """
    text = "".join(
        ch for ch in text.lower() if ch not in _ASCII_PUNCT and ch not in CHINESE_PUNCTUATION
    )
    if _CJK_RE.search(text):
        return text.replace(" ", "")
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def answer_tokens(text: str, chinese: bool = False) -> list[str]:
    """Tokens of one normalised answer: words, or with ``chinese`` characters for CJK text.

    With ``chinese`` the characters of :func:`normalize_answer_zh` (any ``\\n`` among them)
    when it holds a CJK character, else its words. :func:`f1_set` tokenises a pair jointly:
    both sides by characters when *either* normalised side holds a CJK character.
    """
    if chinese:
        normalized = normalize_answer_zh(text)
        return list(normalized) if _CJK_RE.search(normalized) else normalized.split()
    return normalize_answer(text).split()


def _pair_tokens(prediction: str, gold: str, chinese: bool) -> tuple[list[str], list[str]]:
    """Tokens of a (prediction, gold) pair; with ``chinese``, characters for both sides
    (spaces kept for a side without CJK) when either normalised side holds a CJK character."""
    if not chinese:
        return answer_tokens(prediction), answer_tokens(gold)
    pred, ref = normalize_answer_zh(prediction), normalize_answer_zh(gold)
    if _CJK_RE.search(pred) or _CJK_RE.search(ref):
        return list(pred), list(ref)
    return pred.split(), ref.split()


# ----------------------------------------------------------------------------- metrics


def f1_set(prediction: str, gold: str, chinese: bool = False) -> float:
    """The paper's F1: overlap of token *sets*, over the full token counts.

    With ``chinese`` both strings are tokenised by characters when either normalised string
    holds a CJK character (a non-CJK side then counts its spaces as tokens), else by words.
    """
    pred, ref = _pair_tokens(prediction, gold, chinese)
    common = len(set(pred) & set(ref))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1_counter(prediction: str, gold: str, chinese: bool = False) -> float:
    """SQuAD's F1 with multiset overlap (offered for comparison; not the paper's metric)."""
    pred, ref = _pair_tokens(prediction, gold, chinese)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str, chinese: bool = False) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    normalize = normalize_answer_zh if chinese else normalize_answer
    return float(normalize(prediction) == normalize(gold))


def as_gold_list(golds: str | Iterable[str] | None) -> list[str]:
    """Gold answers as a list of strings (prediction files hold a str or a list)."""
    if golds is None:
        return []
    if isinstance(golds, str):
        return [golds]
    return [str(g) for g in golds]


def score_answer(
    prediction: str | None, golds: str | Iterable[str], chinese: bool = False
) -> tuple[float, float]:
    """The paper's evaluation score ``(f1, em)`` of one prediction.

    Max over the gold answers for each metric; F1 = 1 when EM = 1; a missing prediction or
    an empty gold list scores ``(0.0, 0.0)``.
    """
    gold_list = as_gold_list(golds)
    if prediction is None or not gold_list:
        return 0.0, 0.0
    prediction = str(prediction)
    em = max(exact_match(prediction, g, chinese) for g in gold_list)
    f1 = 1.0 if em == 1.0 else max(f1_set(prediction, g, chinese) for g in gold_list)
    return f1, em


# ----------------------------------------------------------------------------- training rewards
# The paper's GRPO reward = accuracy + format, summed with weight 1 (paper.md §3.2-3.3).

PROBLEM_TYPES = (
    "rotation90",
    "rotation180",
    "dark",
    "overexposure",
    "blur",
    "noise",
    "crop",
    "none",
)
CODE_REWARD_PAPER = 0.9
SIMILARITY_THRESHOLD = 0.5

_THINK = r"<think>.*?</think>\s*"
FORMAT_PATTERNS = {
    "answer": re.compile(_THINK + r"<answer>.*?</answer>", re.DOTALL),
    "search": re.compile(_THINK + r"<search>.*?</search>", re.DOTALL),
    "code": re.compile(_THINK + r"<code>\s*```python(.*?)```.*?</code>", re.DOTALL),
    "problem": re.compile(
        r"^<think>.*?</think>\s*<problem>\s*\{\s*'[^']+'\s*(?:,\s*'[^']+'\s*)*\}\s*</problem>$",
        re.DOTALL,
    ),
}
_FORMAT_SINGLETONS = {
    "search": ("<answer>", "<search>", "<think>"),
    "coding": ("<answer>", "<code>", "<think>", "<problem>"),
}


def format_singletons(tags: Iterable[str]) -> tuple[str, ...]:
    """The opening tags a well-formed turn holds at most once: ``<think>`` and each action tag
    of the env (its registered tools). For the paper's envs this is the paper's own list."""
    return ("<think>", *(f"<{tag}>" for tag in tags if tag != "think"))


def tag_pattern(tag: str) -> re.Pattern[str]:
    """The format pattern of a tool without a paper pattern: ``<think>…</think>`` then
    ``<tag>…</tag>``, the shape of the paper's ``<answer>`` and ``<search>`` patterns."""
    pattern = FORMAT_PATTERNS.get(tag)
    if pattern is None:
        pattern = re.compile(_THINK + rf"<{re.escape(tag)}>.*?</{re.escape(tag)}>", re.DOTALL)
    return pattern


def extract_span(text: str, tag: str) -> str:
    """The paper's span extraction: first ``<tag>…</tag>`` on one line, else the whole text."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text)
    return match.group(1).strip() if match else text.strip()


_PAPER_KINDS = ("answer", "code", "problem", "search")
#: The step kinds of the coding task, in the authors' branch order (no ``search``).
CODING_KINDS = ("answer", "code", "problem")


def step_kind(step: str, tags: Sequence[str] = _PAPER_KINDS) -> str | None:
    """Which action a gold step (or a completion) is: the first of ``tags`` whose opening tag
    it contains (the paper's order: answer, code, problem, search)."""
    for kind in tags:
        if f"<{kind}>" in step:
            return kind
    return None


def format_reward(
    completion: str, kind: str, task: str = "coding", tags: Iterable[str] | None = None
) -> float:
    """The paper's format reward for a completion of step type ``kind``.

    ``task`` is ``"coding"`` or ``"search"``: coding checks the gold step's pattern; search
    checks the pattern of whichever action the completion contains (paper.md §3.2-3.3).
    ``tags`` are the env's action tags (its registered tools): a turn holding any of them,
    or ``<think>``, twice earns 0. ``None`` is the paper's list for ``task``; the paper's
    envs pass their own tags, which are that list. A ``kind`` without a paper pattern is
    checked with :func:`tag_pattern`.
    """
    if task not in _FORMAT_SINGLETONS:
        raise ValueError(f"task must be 'coding' or 'search', got {task!r}")
    singletons = _FORMAT_SINGLETONS[task] if tags is None else format_singletons(tags)
    if any(completion.count(tag) >= 2 for tag in singletons):
        return 0.0
    if task == "search" and (tags is None or kind in _PAPER_KINDS):
        # The authors branch on the tags' presence anywhere, in any order: a completion holding
        # both "<answer>" and "</answer>" is judged as an answer even when "</answer>" comes
        # first (say, inside the think) and the turn itself is a valid search, and scores 0.
        if "<answer>" in completion and "</answer>" in completion:
            ok = FORMAT_PATTERNS["answer"].fullmatch(completion) and not FORMAT_PATTERNS[
                "search"
            ].fullmatch(completion)
            return float(bool(ok))
        if "<search>" in completion and "</search>" in completion:
            return float(bool(FORMAT_PATTERNS["search"].fullmatch(completion)))
        return 0.0
    if kind not in FORMAT_PATTERNS:
        if tags is None or kind not in tags:
            raise ValueError(
                f"unknown step kind {kind!r}; expected one of {sorted(FORMAT_PATTERNS)} "
                "or one of the env's tags"
            )
    return float(bool(tag_pattern(kind).fullmatch(completion)))


def extract_problems(text: str) -> list[str]:
    """Sorted quoted names inside ``<problem>{…}</problem>`` (empty when absent)."""
    match = re.search(r"<problem>\s*\{(.*?)\}\s*</problem>", text, re.DOTALL)
    if match is None:
        return []
    return sorted(re.findall(r"'([^']+)'", match.group(1)))


def problem_reward(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """1.0 for the exact set; 0.5 for naming only the rotation of a rotation+X pair; else 0.

    As the authors do, ``rotation90`` is tested first: for a gold pair holding both rotations
    only ``['rotation90']`` earns the half credit (``['rotation180']`` earns 0).
    """
    predicted, gold = sorted(predicted), sorted(gold)
    if len(gold) == 2:
        rotation = next((r for r in ("rotation90", "rotation180") if r in gold), None)
        if rotation is not None and len(predicted) == 1 and rotation in predicted:
            return 0.5
    return float(predicted == gold)


def answer_reward(prediction: str, gold: str) -> float:
    """Training answer reward: set F1 with no EM override (as in the paper's GRPO script)."""
    return f1_set(prediction, gold)


def code_reward(mode: str, ran_and_wrote_image: bool = False) -> float:
    """``paper``: the constant 0.9; ``live``: 1.0 only when the code ran and wrote an image."""
    if mode == "paper":
        return CODE_REWARD_PAPER
    if mode == "live":
        return float(ran_and_wrote_image)
    raise ValueError(f"reward mode must be 'live' or 'paper', got {mode!r}")


def search_query_reward(similarity: float, threshold: float = SIMILARITY_THRESHOLD) -> float:
    """The query reward: the cosine similarity itself, or 0 below ``threshold``."""
    return float(similarity) if similarity >= threshold else 0.0


def coding_accuracy_reward(completion: str, gold_step: str) -> float:
    """The paper's coding accuracy reward of one completion against its gold step (§3.3)."""
    kind = step_kind(gold_step, CODING_KINDS)
    if kind == "answer":
        if "<code>" in completion or "<problem>" in completion:
            return 0.0
        return answer_reward(extract_span(completion, "answer"), extract_span(gold_step, "answer"))
    if kind == "code":
        if "<answer>" in completion or "<problem>" in completion:
            return 0.0
        return CODE_REWARD_PAPER
    if kind == "problem":
        if "<answer>" in completion or "<code>" in completion:
            return 0.0
        return problem_reward(extract_problems(completion), extract_problems(gold_step))
    return 0.0


def coding_format_reward(completion: str, gold_step: str) -> float:
    """The paper's coding format reward of one completion against its gold step (§3.3).

    The pattern is the gold step's kind (answer, code or problem, tested in that order); a
    gold step with none of those tags, e.g. one holding only ``<search>``, is no coding step
    and scores 0, as in the authors' function.
    """
    kind = step_kind(gold_step, CODING_KINDS)
    return 0.0 if kind is None else format_reward(completion, kind, task="coding")


def search_accuracy_reward(completion: str, gold_step: str, similarity=None) -> float:
    """The paper's search accuracy reward (§3.2), without its math_verify pre-check.

    ``similarity(a, b) -> float`` scores two queries (MiniLM cosine in the paper); it is only
    called for search steps.
    """
    if "<answer>" in gold_step:
        if "<search>" in completion:
            return 0.0
        return answer_reward(extract_span(completion, "answer"), extract_span(gold_step, "answer"))
    if "<search>" in gold_step:
        if "<answer>" in completion:
            return 0.0
        if similarity is None:
            raise ValueError("a search step needs a similarity function")
        sim = similarity(extract_span(completion, "search"), extract_span(gold_step, "search"))
        return search_query_reward(sim)
    return 0.0


# ----------------------------------------------------------------------------- live search reward
# The paper's weights (reward_mode="paper"): each of the N planned searches earns format (0/1)
# + query (similarity >= 0.5, else 0) and the answer format (0/1) + F1, so the gold trajectory
# returns 2(N+1) and the N searches outweigh the answer N to 1: a policy can raise its return
# more by searching than by answering right. The live weights (reward_mode="live", agent mode)
# make the answer the optimum:
#
# ====================  ============================  ===================================
# step                  paper                         live
# ====================  ============================  ===================================
# planned search i<=N   format + query (each <= 1)    (0.25 format + 0.75 query) / N
# search beyond N       0                             -0.1 (``extra``)
# answer                format + F1                   1.0 format + 2.0 F1
# best return           2(N+1)                        4, whatever N
# ====================  ============================  ===================================
#
# So all the searches together are worth at most 1, less than half the answer term; a missed
# hop costs 1/N <= 1, an extra search 0.1, and a wrong answer (F1 0) with every hop earns 2
# against 4 - 1/N or 3.9 for the right answer with one hop less or more.

LIVE_SEARCH_FORMAT = 0.25
LIVE_SEARCH_QUERY = 0.75
LIVE_EXTRA_SEARCH = -0.1
LIVE_ANSWER_FORMAT = 1.0
LIVE_ANSWER_F1 = 2.0


def live_search_components(
    format_ok: float, query: float, index: int, planned: int
) -> dict[str, float]:
    """The live reward of the ``index``-th search (0-based) of an episode planning ``planned``.

    ``format_ok`` is the paper's format score (0/1) and ``query`` the search's credit in
    [0, 1] (retrieval credit or thresholded similarity). Within the plan:
    ``format = 0.25·format_ok/N`` and ``query = 0.75·query/N``; beyond it ``extra = -0.1``.
    """
    if index >= planned:
        return {"format": 0.0, "query": 0.0, "extra": LIVE_EXTRA_SEARCH}
    n = max(int(planned), 1)
    return {
        "format": LIVE_SEARCH_FORMAT * float(format_ok) / n,
        "query": LIVE_SEARCH_QUERY * float(query) / n,
    }


def live_answer_components(format_ok: float, f1: float) -> dict[str, float]:
    """The live reward of a search env's answer: ``format = 1·format_ok``, ``answer = 2·F1``."""
    return {"format": LIVE_ANSWER_FORMAT * float(format_ok), "answer": LIVE_ANSWER_F1 * float(f1)}


def retrieval_credit(
    found: Sequence[str],
    gold_docs: Sequence[Sequence[str]],
    used: set[str],
    credited: set[int],
) -> int | None:
    """The hop one search earns credit for under the live retrieval rule, or ``None``.

    ``found`` are the urls the search returned, best first; ``gold_docs[h]`` the urls of the
    documents that state hop ``h``'s fact; ``used`` the documents that already earned a
    credit and ``credited`` the hops already credited (both updated in place).

    The search earns a hop when its *best* result is a gold document of a hop not yet
    credited (the first such hop, in gold order) and that document has not earned a credit
    before. So a search earns at most one hop, must be aimed at the hop's entity (a document
    merely listed lower does not count), and repeating a search earns nothing. The env and
    the synthetic generator (which checks that every gold query earns its credit) share this
    one definition.
    """
    found = list(found)
    if not found or found[0] in used:
        return None
    for hop, alternatives in enumerate(gold_docs):
        if hop not in credited and found[0] in alternatives:
            credited.add(hop)
            used.add(found[0])
            return hop
    return None
