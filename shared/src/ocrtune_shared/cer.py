"""Character error rate, computed the same way by the trainer and the client.

CER = edit distance / reference length. We report both the corpus figure (total
edits / total reference characters) and the mean of per-sample CERs, after one
stated normalization: Unicode NFKC (full-width to half-width) and whitespace
removed, because line OCR ground truth rarely agrees with a model on spaces.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from pydantic import BaseModel
from rapidfuzz.distance import Levenshtein

NORMALIZATION = "nfkc+strip_whitespace"


def normalize(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


class CERResult(BaseModel):
    corpus_cer: float
    mean_cer: float
    samples: int
    normalization: str = NORMALIZATION


def character_error_rate(predictions: Sequence[str], references: Sequence[str]) -> CERResult:
    """Corpus and mean per-sample CER of ``predictions`` against ``references``."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("CER needs at least one reference")
    total_edits = total_chars = 0
    per_sample: list[float] = []
    for pred, ref in zip(predictions, references, strict=True):
        p, r = normalize(pred), normalize(ref)
        edits = Levenshtein.distance(p, r)
        total_edits += edits
        total_chars += len(r)
        per_sample.append(edits / max(len(r), 1))
    return CERResult(
        corpus_cer=total_edits / max(total_chars, 1),
        mean_cer=sum(per_sample) / len(per_sample),
        samples=len(references),
    )
