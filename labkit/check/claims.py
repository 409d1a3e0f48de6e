"""Prose held to outputs: each quantitative sentence a notebook says about a measurement is a claim here.

A claim pairs the sentence, as the notebook prints it, with a test of the numbers the sentence
reads. The notebook's claim cell, right after the output, passes its live numbers:
``check.claim("08.ladder", gflops=...)`` prints one fixed line when the sentence holds and raises
ClaimFailed, quoting the sentence and what was seen, when it does not. The bounds are wide enough
for a loaded 2-core machine and narrow enough that the artefacts of earlier runs fail: the values
those outputs showed are a test fixture (tests/claims_old_outputs.json). Introduced in notebook 04.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

HOLDS = "✔ claim {name}: the output agrees with the text"


class ClaimFailed(AssertionError):
    """A stored or fresh output contradicts the sentence that reads it (shown short, like CheckFailed)."""

    def _render_traceback_(self) -> list[str]:
        return str(self).split("\n")


@dataclass(frozen=True)
class Claim:
    """``sentence`` as the notebook says it; ``contradicted(**values)`` is what was seen that breaks it, or ''."""

    sentence: str
    contradicted: Callable[..., str]


def _ratio_grows(times: dict, at_least: float) -> str:
    """times: {provider: [seconds at increasing N]}; each must grow by ``at_least`` from first to last."""
    flat = {p: t[-1] / t[0] for p, t in times.items()}
    slow = {p: f"{r:.2f}x" for p, r in flat.items() if r < at_least}
    return f"time grew only {slow} from the smallest to the largest N (need at least {at_least}x)" if slow else ""


def _between(name: str, value: float, lo: float, hi: float) -> str:
    return "" if lo <= value <= hi else f"{name} = {value:.3g}, outside [{lo}, {hi}]"


def _ladder(sizes: tuple, gflops: dict) -> str:
    """gflops: {rung: [GFLOP/s, or None when too slow to time, per size]}, rungs in the ladder's order, LAPACK last.
    LAPACK leads at n = 256 and is faster at n = 1000 than at 256; at n = 1000 each timed rung below the blocked
    LU beats the one below it, and the blocked LU (the rung before LAPACK) is within a factor 2 of LAPACK."""
    rungs, at = list(gflops), {n: j for j, n in enumerate(sizes)}
    lapack = gflops[rungs[-1]]
    seen = [f"{r} {gflops[r][at[256]]:.3g} >= LAPACK {lapack[at[256]]:.3g} at n = 256" for r in rungs[:-1]
            if gflops[r][at[256]] is not None and gflops[r][at[256]] >= lapack[at[256]]]
    if lapack[at[1000]] < lapack[at[256]]:
        seen.append(f"LAPACK slows down: {lapack[at[256]]:.3g} at n = 256, {lapack[at[1000]]:.3g} at n = 1000")
    timed = [(r, gflops[r][at[1000]]) for r in rungs[:-1] if gflops[r][at[1000]] is not None]
    seen += [f"{a} ({x:.3g}) is not faster than {b} ({y:.3g}) at n = 1000"
             for (b, y), (a, x) in zip(timed, timed[1:]) if x <= y]
    blocked = gflops[rungs[-2]][at[1000]]
    if blocked is None or blocked < lapack[at[1000]] / 2:
        seen.append(f"{rungs[-2]} at n = 1000 is {blocked}, not within a factor 2 of LAPACK's {lapack[at[1000]]:.3g}")
    return "; ".join(seen)


CLAIMS: dict[str, Claim] = {
    "04.times_grow": Claim(
        "Quadratic in N: the time of both grows with N (16x the work from N = 128 to 512)",
        lambda times: _ratio_grows(times, 3.0)),
    "04.memory_slope": Claim(
        "The points follow slope 2 on log-log axes, about twice the scores matrix",
        lambda slope, ratios: _between("slope", slope, 1.85, 2.15) or
        next(filter(None, (_between("measured / scores", r, 1.8, 2.3) for r in ratios)), "")),
    "08.reuse": Claim(
        "The reuse ratio is above the flop ratio: the 50 solves run as one level-3 triangular solve, and each "
        "elimination call has its own overhead",
        lambda reuse, flop_ratio: "" if reuse >= 0.9 * flop_ratio else
        f"reuse {reuse:.1f}x is below 0.9 x the flop ratio {flop_ratio:.1f}x"),
    "08.lu_slope": Claim(
        "The slope rises with n: below 3 at small n, where per-call overheads do not grow like n^3, and close "
        "to 3 between the two largest sizes",
        lambda segments: "" if segments[0] < 2.9 and 2.6 <= segments[-1] <= 3.8 and segments[-1] > segments[0] else
        f"segment slopes {[round(float(x), 2) for x in segments]} (need the first below 2.9, the last in "
        f"[2.6, 3.8] and above the first)"),
    "10.decode_linear": Claim(
        "If memory sets the pace, time grows in proportion to N",
        lambda slope: _between("the time's slope from 4096 to 32768 tokens (log-log)", slope, 0.7, 1.3)),
    "10.cache_speedup": Claim(
        "the measured speed-up is smaller than that factor, though clear at the longest prefix",
        lambda speedups: "" if 1.2 <= speedups[-1] < 64 else
        f"speed-ups {[round(float(s), 2) for s in speedups]} from the shortest prompt to the longest (need the last "
        f"at least 1.2, and below the prefix length 64)"),
    "08.ladder": Claim(
        "With one BLAS thread LAPACK leads at n = 256 and runs faster at n = 1000 than at 256; at n = 1000 each rung "
        "is faster than the one below it, and labkit's blocked LU comes within a factor 2 of LAPACK",
        _ladder),
}


def claim(name: str, **values) -> None:
    """Print the fixed line when claim ``name``'s sentence holds for ``values``; else raise ClaimFailed."""
    if name not in CLAIMS:
        raise KeyError(f"no claim {name!r}: the claims are {sorted(CLAIMS)}")
    seen = CLAIMS[name].contradicted(**values)
    if seen:
        raise ClaimFailed(f"✘ claim {name}: the output contradicts the text\n"
                          f"  the text says: \u201c{CLAIMS[name].sentence}\u201d\n  seen: {seen}")
    print(HOLDS.format(name=name))
