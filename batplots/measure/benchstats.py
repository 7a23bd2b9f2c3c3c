"""Numbers shared by the benchmarks (`batplots bench` and the app under load): no model,
no server, so both measure with the same arithmetic and neither imports the other."""

from __future__ import annotations

import statistics

# Sentences per continuation in every benchmark.
BENCH_SENTENCES = 2


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95)),
            "mean": _round(statistics.fmean(values)) if values else None}


def _round(x, digits=3):
    return None if x is None else round(x, digits)
