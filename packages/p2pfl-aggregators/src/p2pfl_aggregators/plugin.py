"""The p2pfl-aggregators plugin: registers every aggregator under its name.

Targets are lazy ``"module:attr"`` strings: listing plugins imports nothing of this
package but this module (not even numpy).
"""

from __future__ import annotations

from typing import Any

from p2pfl import hookimpl

#: name -> (target, family, one-line description)
AGGREGATORS: dict[str, tuple[str, str, str]] = {
    "median": ("robust:Median", "robust", "coordinate-wise median (f; n >= 2f+1)"),
    "weighted-median": ("robust:WeightedMedian", "robust", "sample-weighted coordinate-wise median (f; n >= 2f+1)"),
    "trimmed-mean": ("robust:TrimmedMean", "robust", "coordinate-wise trimmed mean (beta)"),
    "krum": ("robust:Krum", "robust", "Krum, Blanchard et al. 2017 (f; n >= 2f+3)"),
    "multi-krum": ("robust:MultiKrum", "robust", "Multi-Krum: mean of the m best Krum scores (f, m)"),
    "bulyan": ("robust:Bulyan", "robust", "Bulyan over Krum, El Mhamdi et al. 2018 (f; n >= 4f+3)"),
    "geometric-median": ("robust:GeometricMedian", "robust", "geometric median, smoothed Weiszfeld / RFA"),
    "centered-clipping": ("robust:CenteredClipping", "robust", "centered clipping, Karimireddy et al. 2021 (tau)"),
    "fedavgm": ("adaptive:FedAvgM", "adaptive", "FedAvg with server momentum (eta, momentum)"),
    "fedadagrad": ("adaptive:FedAdagrad", "adaptive", "adaptive server optimizer, Reddi et al. 2021"),
    "fedadam": ("adaptive:FedAdam", "adaptive", "adaptive server optimizer, Reddi et al. 2021"),
    "fedyogi": ("adaptive:FedYogi", "adaptive", "adaptive server optimizer, Reddi et al. 2021"),
    "fedprox": ("drift:FedProx", "drift", "FedAvg plus a proximal term in local training (mu)"),
    "scaffold": ("drift:Scaffold", "drift", "SCAFFOLD control variates, option II (eta_g)"),
}


#: extra metadata: ``needs_num_nodes`` makes the experiment runner pass the network size
#: as the ``num_nodes`` parameter (SCAFFOLD's N).
METADATA: dict[str, dict[str, Any]] = {"scaffold": {"needs_num_nodes": True}}


@hookimpl
def p2pfl_register_aggregators(register: Any) -> None:
    for name, (target, family, description) in AGGREGATORS.items():
        register(name, f"p2pfl_aggregators.{target}", family=family, description=description, **METADATA.get(name, {}))
