"""Regenerate the committed protobuf modules (needs grpcio-tools, a dev dependency).

Usage: python scripts/gen_proto.py

The generated ``*_pb2.py`` files pin the exact protobuf runtime they were made with; we drop
that check so the distributions work with any protobuf >= 5 (the descriptor-builder API they
use is stable across those releases).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = [
    ("packages/p2pfl-core/src", "p2pfl/wire/p2pfl_wire.proto", False),
    (
        "packages/p2pfl-grpc/src",
        "p2pfl_grpc/proto/node_service.proto",
        False,
    ),  # handlers are hand-wired: no grpcio version pin
]
VERSION_CHECK = re.compile(
    r"from google\.protobuf import runtime_version as _runtime_version\n"
    r"|_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)\n",
    re.S,
)


def main() -> None:
    for src, proto, with_grpc in PROTOS:
        if not (ROOT / src / proto).exists():
            continue
        args = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            "-Ip2pfl-core-src=../../p2pfl-core/src",
            "--python_out=.",
            "--pyi_out=.",
        ]
        args = [a for a in args if not a.startswith("-Ip2pfl-core-src")] + [
            "-I" + str(ROOT / "packages/p2pfl-core/src")
        ]
        if with_grpc:
            args.append("--grpc_python_out=.")
        subprocess.run([*args, proto], cwd=ROOT / src, check=True)
        for generated in (ROOT / src / proto).parent.glob("*_pb2*.py"):
            generated.write_text(VERSION_CHECK.sub("", generated.read_text()))
        print("generated", proto)


if __name__ == "__main__":
    main()
