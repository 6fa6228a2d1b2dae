"""Build the wheel and sdist of every distribution under packages/ into dist/.

Run: hatch run dev:build-all  (or: python scripts/build_all.py [OUTDIR])
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "dist"
    out.mkdir(parents=True, exist_ok=True)
    # each distribution is its own hatch project: forget the workspace environment we may run in
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCH_")}
    for package in sorted((ROOT / "packages").iterdir()):
        if (package / "pyproject.toml").is_file():
            subprocess.run([sys.executable, "-m", "hatch", "build", str(out)], cwd=package, check=True, env=env)
    print(f"built into {out}:")
    for artifact in sorted(out.iterdir()):
        print(" ", artifact.name)


if __name__ == "__main__":
    main()
