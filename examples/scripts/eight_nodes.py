"""Eight nodes in memory learn the built-in MNIST digits for three rounds with the numpy learner.

Run: hatch run core:python examples/scripts/eight_nodes.py

Everything is real: each node trains on its own IID slice of the 5,000 MNIST digits shipped
with p2pfl-core, talks to its two ring neighbours through the in-memory transport (every
message goes through the binary wire encoding), and the nodes end with identical models.
"""

from __future__ import annotations

from p2pfl.communication.memory import MemoryNetwork
from p2pfl.data import build_node_data
from p2pfl.data.loaders import mnist
from p2pfl.data.partitioners import iid
from p2pfl.examples.models import mlp
from p2pfl.node import Node, Runtime
from p2pfl.parameters import parameters_digest

NODES, ROUNDS = 8, 3


def main() -> None:
    datas = build_node_data(mnist(), iid, num_nodes=NODES, seed=0, batch_size=32)
    network, runtime = MemoryNetwork(), Runtime(workers=2)
    nodes = [
        Node(
            mlp((28, 28), 10, hidden=[64], seed=i),
            data,
            node_id=f"node-{i}",
            protocol="memory",
            protocol_options={"network": network},
            runtime=runtime,
            seed=i,
            learner_options={"lr": 0.1},
        )
        for i, data in enumerate(datas)
    ]
    try:
        for node in nodes:
            node.start()
        for i in range(NODES):  # a ring
            nodes[i].connect(nodes[(i + 1) % NODES].address)
        nodes[0].start_learning(rounds=ROUNDS, epochs=1)
        for node in nodes:
            if not node.wait_finished(timeout=600):
                raise SystemExit(f"{node.id} did not finish")
        for node in nodes:
            last = node.history[-1]
            print(
                f"{node.id}: round {last['round']} accuracy {last['accuracy']:.3f} "
                f"model {parameters_digest(node.get_parameters())}"
            )
        digests = {parameters_digest(n.get_parameters()) for n in nodes}
        print("all nodes agree" if len(digests) == 1 else f"nodes DISAGREE: {digests}")
    finally:
        for node in nodes:
            node.stop()
        runtime.close()


if __name__ == "__main__":
    main()
