"""Linear CKA: rice_lab.explain.similarity against a naive implementation, on the same features.

    python benchmarks/bench_cka.py [--rows 2000] [--width-a 512] [--width-b 256] [--batch-size 256]
                                   [--rounds 3] [--threads 2]

Features: ``--rows`` seeded random rows of ``--width-a`` and ``--width-b`` float32 features (the second a
noisy linear read-out of the first, so CKA is well away from 0), prepared outside the clock.

* naive: the textbook formula with full n x n Gram matrices in float64, ``K = XX'``, ``L = YY'``,
  the centring matrix ``H = I - 11'/n`` and ``HSIC(K, L) = tr(KHLH) / (n - 1)^2``, three HSICs
  (n x n matrix products: O(n^3));
* naive, centred Grams: the same Gram matrices centred by their row and column means, as Kornblith
  et al.'s published code does (O(n^2 d), no n x n product), HSIC as the dot product of the two;
* ours, mini-batch: :func:`rice_lab.explain.similarity.minibatch_cka` (Nguyen et al.'s unbiased
  HSIC over batches of ``--batch-size`` rows, float64 arithmetic), without its permutation baseline;
* ours, full batch: :func:`rice_lab.explain.similarity.linear_cka`, the same number as the naive one,
  computed from the features' cross-products instead of n x n matrices.

Timed, best of ``--rounds`` (noise on a shared machine only slows a run down). Ratios are the naive
time over ours: above 1 means rice_lab is faster. The values are printed too: the full-batch one
must equal the naive one; the mini-batch one is another estimator (unbiased), close but not equal.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch


def best_time(run: Callable[[], object], rounds: int) -> tuple[float, list[float], object]:
    times, value = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
    return min(times), times, value


def naive_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA as the formula reads: full Gram matrices and the centring matrix, float64."""
    x, y = x.double(), y.double()
    n = len(x)
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    k, l = x @ x.T, y @ y.T

    def hsic(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hsic(k, l) / (hsic(k, k) * hsic(l, l)) ** 0.5


def centred_gram_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA from full Gram matrices centred by their means (no centring matrix), float64."""
    def centred(a: torch.Tensor) -> torch.Tensor:
        k = a.double() @ a.double().T
        return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()

    k, l = centred(x), centred(y)
    return float((k * l).sum() / (k.norm() * l.norm()))


def features(rows: int, width_a: int, width_b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width_a, generator=generator) * torch.linspace(3, 0.1, width_a)
    y = x @ torch.randn(width_a, width_b, generator=generator) / width_a ** 0.5
    return x, y + 0.5 * torch.randn(rows, width_b, generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--width-a", type=int, default=512)
    parser.add_argument("--width-b", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rice_lab.explain.similarity import linear_cka, minibatch_cka

    x, y = features(args.rows, args.width_a, args.width_b)
    print(f"features: {args.rows} x {args.width_a} against {args.rows} x {args.width_b} (float32); "
          f"best of {args.rounds} rounds, {args.threads} threads")
    naive, naive_rounds, naive_value = best_time(lambda: naive_cka(x, y), args.rounds)
    grams, gram_rounds, gram_value = best_time(lambda: centred_gram_cka(x, y), args.rounds)
    sides = {f"ours, mini-batch ({args.batch_size})": lambda: minibatch_cka(x, y, batch_size=args.batch_size),
             "ours, full batch": lambda: linear_cka(x, y)}
    print(f"{'':28}{'seconds':>9}  {'rounds':<24}{'CKA':>9}  naive / ours  centred / ours")
    for label, best, rounds, value in (("naive (H, n x n, float64)", naive, naive_rounds, naive_value),
                                       ("naive, centred Grams", grams, gram_rounds, gram_value)):
        print(f"{label:28}{best:9.4f}  {', '.join(f'{t:.3f}' for t in rounds):<24}{value:9.6f}")
    for label, run in sides.items():
        ours, rounds, value = best_time(run, args.rounds)
        print(f"{label:28}{ours:9.4f}  {', '.join(f'{t:.3f}' for t in rounds):<24}{value:9.6f}  "
              f"{naive / ours:11.1f}x  {grams / ours:12.1f}x")
    print(f"full batch - naive: {linear_cka(x, y) - naive_value:.1e}; centred Grams - naive: "
          f"{gram_value - naive_value:.1e}")


if __name__ == "__main__":
    main()
