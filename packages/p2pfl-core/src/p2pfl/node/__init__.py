"""Nodes: the runtime hosting them and their settings."""

from p2pfl.node.node import Node
from p2pfl.node.runtime import Runtime
from p2pfl.node.settings import NodeSettings

__all__ = ["Node", "NodeSettings", "Runtime"]
