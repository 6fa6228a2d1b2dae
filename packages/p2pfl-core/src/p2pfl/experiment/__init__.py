"""Experiments: config files, the runner behind ``p2pfl run``, results and plots."""

from p2pfl.experiment.config import ConfigError, load_config, validate
from p2pfl.experiment.results import write_results
from p2pfl.experiment.runner import prepare_config, run_experiment

__all__ = ["ConfigError", "load_config", "prepare_config", "run_experiment", "validate", "write_results"]
