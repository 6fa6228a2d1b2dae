"""Start-up cost of `p2pfl plugins list --json` relative to a bare interpreter, as JSON.

Run: python benchmarks/cli_startup.py [--runs 7]
Target (issue 2): the ratio of medians stays under 3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bare = median_seconds([sys.executable, "-c", "import sys"], args.runs)
    listing = median_seconds([sys.executable, "-m", "p2pfl", "plugins", "list", "--json"], args.runs)
    print(
        json.dumps(
            {
                "python_s": round(bare, 4),
                "plugins_list_s": round(listing, 4),
                "ratio": round(listing / bare, 2),
                "target_ratio": 3.0,
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
