"""Mixed-batch parity: is an answer computed in a mixed batch the one its own route gives alone?

Greedy answers of a model with random weights are full of near-ties, and bfloat16 results
depend on the batch a request lands in (kernel tiling, split reductions): two runs of the
same request may part at a step where the two best tokens are within rounding of each other.
Equal text alone cannot tell such a flip from a request served with the wrong adapter, so
the verdict reads the log-probabilities the service returns (``/ocr`` with ``logprobs``):

- the first step's distribution (top-k log-probabilities) depends only on the image and the
  route (base or adapter), so a mixed answer whose first step is closer to another route's
  than to its own was computed with the wrong adapter, whatever its text;
- where a mixed answer parts from its own route's answer, the two tokens must be a near-tie
  of the answer alone (each in the other's top-k, as vLLM's own ``check_logprobs_close``
  requires, and closer than ``TIE_NATS``), else it is counted wrong too.

The figures that back the verdict are returned with it: the largest first-step distance of
an answer to its own route (rounding noise) and the smallest to another route (how far the
adapters move the model), and the gap at every parting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TIE_NATS = 0.25
"""Largest log-probability gap between two tokens still called a tie (bf16 logits round by ~0.05-0.1)."""


@dataclass(frozen=True)
class Step:
    token: str
    logprob: float
    top: dict[str, float]


def steps_of(page: dict) -> list[Step]:
    """The ``logprobs`` of one ``/ocr`` page as steps."""
    return [Step(t["token"], t["logprob"], {a["token"]: a["logprob"] for a in t["top_logprobs"]})
            for t in page["logprobs"]]


def distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest log-probability difference over the tokens both top-k lists hold (inf if they share < 2)."""
    shared = a.keys() & b.keys()
    if len(shared) < 2:
        return math.inf
    return max(abs(a[t] - b[t]) for t in shared)


@dataclass(frozen=True)
class Verdict:
    kind: str  # "same", "tie" (parted at a near-tie), "wrong" (wrong route, or a parting that is no tie)
    own_distance: float
    other_distance: float
    parted_at: int | None = None
    gap: float | None = None


def judge(mixed: list[Step], own: list[Step], others: list[list[Step]]) -> Verdict:
    own_d = distance(mixed[0].top, own[0].top)
    other_d = min((distance(mixed[0].top, o[0].top) for o in others), default=math.inf)
    if own_d >= other_d:
        return Verdict("wrong", own_d, other_d)
    tokens, alone = [s.token for s in mixed], [s.token for s in own]
    if tokens == alone:
        return Verdict("same", own_d, other_d)
    p = next((i for i, (a, b) in enumerate(zip(tokens, alone, strict=False)) if a != b), min(len(tokens), len(alone)))
    if p >= min(len(tokens), len(alone)):  # one stopped earlier: the end token lost a tie
        return Verdict("tie", own_d, other_d, p, 0.0)
    m, a = mixed[p], own[p]
    tie = m.token in a.top and a.token in m.top
    gap = a.top[a.token] - a.top[m.token] if m.token in a.top else math.inf
    return Verdict("tie" if tie and gap <= TIE_NATS else "wrong", own_d, other_d, p, gap)


def summary(verdicts: list[Verdict]) -> dict:
    finite = [v.other_distance for v in verdicts if math.isfinite(v.other_distance)]
    return {
        "requests": len(verdicts),
        "same": sum(v.kind == "same" for v in verdicts),
        "tie_partings": sum(v.kind == "tie" for v in verdicts),
        "wrong": sum(v.kind == "wrong" for v in verdicts),
        "first_step_distance_to_own_route_max": round(max(v.own_distance for v in verdicts), 4),
        "first_step_distance_to_other_routes_min": round(min(finite), 4) if finite else None,
        "parting_gaps_nats": sorted(round(v.gap, 4) for v in verdicts if v.gap is not None),
        "wrong_details": [vars(v) for v in verdicts if v.kind == "wrong"][:10],
    }
