"""Wall time and accuracy of the built-in `mnist` example, as JSON (issue 4).

Run: python benchmarks/mnist_run.py [--set training.rounds=5 ...]
"""

from __future__ import annotations

import argparse
import json

from p2pfl.examples import mnist
from p2pfl.experiment import run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    summary = run_experiment(mnist(), ["output.dir=", *args.overrides])
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "nodes",
                    "rounds",
                    "final_accuracy",
                    "final_accuracy_min",
                    "wall_seconds",
                    "bytes_sent",
                    "models_agree",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
