"""Scores of decoded sequences against their references, as sums over a batch that add up over a split: exact
matches, character edits (for the character error rate), and the sufficient statistics of sacrebleu's corpus BLEU
and chrF, which are counts of n-grams (corpus scores are ratios of their sums, not means of sentence scores).

BLEU is sacrebleu's corpus BLEU without smoothing, on words (its "13a" tokenizer), or on characters for text a
char tokenizer reads (targets such as "4021" or "dcba" are one word each, and word BLEU would count nothing but
unigrams). chrF is sacrebleu's chrF (character n-grams up to 6, beta 2). The scores are computed from the sums
divided by the number of samples: both are ratios of the sums, which that scale does not change.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

BLEU_ORDER = 4
CHRF_STATISTICS = 18  # (hypothesis, reference, matches) for each of 6 character n-gram orders


def bleu_metric(char_level: bool) -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="char" if char_level else "13a", smooth_method="none")


def chrf_metric() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


def bleu_statistics(metric: Any, hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(2 + 2 * order,) the batch's sums: hypothesis length, reference length, then matching and total n-grams of
    each order."""
    if not hypotheses:
        return np.zeros(2 + 2 * BLEU_ORDER)
    return np.asarray(metric._extract_corpus_statistics(list(hypotheses), [list(references)]),
                      dtype=np.float64).sum(axis=0)


def chrf_statistics(metric: Any, hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    if not hypotheses:
        return np.zeros(CHRF_STATISTICS)
    return np.asarray(metric._extract_corpus_statistics(list(hypotheses), [list(references)]),
                      dtype=np.float64).sum(axis=0)


def bleu_score(statistics: Sequence[float]) -> float:
    """Corpus BLEU (0-100) from summed (or uniformly scaled) statistics, as sacrebleu computes it without smoothing:
    the brevity penalty times the geometric mean of the n-gram precisions, 0 when an order has no match."""
    hypothesis_length, reference_length = statistics[0], statistics[1]
    correct, total = statistics[2:2 + BLEU_ORDER], statistics[2 + BLEU_ORDER:2 + 2 * BLEU_ORDER]
    if hypothesis_length <= 0 or min(correct) <= 0 or min(total) <= 0:
        return 0.0
    penalty = math.exp(1 - reference_length / hypothesis_length) if hypothesis_length < reference_length else 1.0
    return float(penalty * math.exp(sum(math.log(100 * c / t) for c, t in zip(correct, total)) / BLEU_ORDER))


def chrf_score(metric: Any, statistics: Sequence[float]) -> float:
    """Corpus chrF (0-100) from summed (or uniformly scaled) statistics."""
    return float(metric._compute_f_score(list(statistics)))


def edit_distance(hypothesis: str, reference: str) -> int:
    """Levenshtein distance in characters (insertions, deletions, substitutions), with the common prefix and
    suffix set aside first: decoded outputs are mostly right, and their differences short."""
    if hypothesis == reference:
        return 0
    start = 0
    while start < min(len(hypothesis), len(reference)) and hypothesis[start] == reference[start]:
        start += 1
    end = 0
    while (end < min(len(hypothesis), len(reference)) - start
           and hypothesis[-1 - end] == reference[-1 - end]):
        end += 1
    a, b = hypothesis[start:len(hypothesis) - end], reference[start:len(reference) - end]
    if not a or not b:
        return max(len(a), len(b))
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return previous[-1]
