"""Speed of the data layer: generate 2,000 plants at 128 px, then read them back, on 2 CPU cores.

    python benchmarks/bench_data.py [--plants 2000] [--width 128] [--cores 2] [--keep PATH]

Generation runs in ``--cores`` worker processes; reading is :func:`rice_lab.data.read_zindi`, which
decodes every image, checks every mask and compares every photo with every other (pixel hash and
perceptual hash, for duplicates). The process is pinned to ``--cores`` CPUs where the
system allows it, so the figures compare across machines. Target: both steps in under a minute.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from rice_lab.data import read_zindi
from rice_lab.data.synthetic import SynthConfig, synthesize


def pin_to_cores(cores: int) -> str:
    """Restrict this process (and the workers it forks) to ``cores`` CPUs; say what happened."""
    if not hasattr(os, "sched_setaffinity"):
        return f"cannot pin on this system; {os.cpu_count()} CPUs visible"
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, available[:cores])
    return f"pinned to CPUs {available[:cores]} of {len(available)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plants", type=int, default=2000)
    parser.add_argument("--width", type=int, default=128, help="image width in px (height: 4/5 of it)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)

    print(f"bench_data: {args.plants} plants at {args.width} px wide, {pin_to_cores(args.cores)}")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch) / "synthetic"
        start = time.perf_counter()
        synthesize(root, SynthConfig(plants=args.plants, width=args.width, workers=args.cores), progress=False)
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        plants = read_zindi(root)
        read_s = time.perf_counter() - start
    assert len(plants) == args.plants, f"read {len(plants)} plants, wrote {args.plants}"
    total = generate_s + read_s
    print(f"  generate  {generate_s:6.1f} s   {args.plants / generate_s:7.1f} plants/s")
    print(f"  read      {read_s:6.1f} s   {args.plants / read_s:7.1f} plants/s  (every image decoded)")
    print(f"  total     {total:6.1f} s   {'within' if total < 60 else 'OVER'} the one-minute target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
