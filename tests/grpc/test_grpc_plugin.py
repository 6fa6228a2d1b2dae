"""Registration: the ``grpc`` protocol is found lazily, and listing plugins imports no grpc."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from p2pfl.plugins.manager import PluginManager

pytestmark = pytest.mark.framework


def test_grpc_is_registered_under_protocols() -> None:
    from p2pfl_grpc import plugin
    from p2pfl_grpc.transport import GrpcTransport

    manager = PluginManager(discover=False)
    manager.register(plugin, name="p2pfl-grpc")
    assert manager.registry("protocols").load("grpc") is GrpcTransport
    assert GrpcTransport.name == "grpc"


def test_discovering_plugins_imports_neither_grpc_nor_cryptography() -> None:
    code = (
        "import json, sys\n"
        "from p2pfl.plugins.manager import PluginManager\n"
        "m = PluginManager()\n"
        "names = sorted(c.name for c in m.registry('protocols'))\n"
        "print(json.dumps([names, 'grpc' in sys.modules, 'cryptography' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    names, grpc_loaded, crypto_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "grpc" in names
    assert not grpc_loaded and not crypto_loaded
