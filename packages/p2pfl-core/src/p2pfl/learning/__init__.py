"""Learners: the interface framework plugins implement, and the numpy reference learner."""

from p2pfl.learning.learner import (
    FitContext,
    FitResult,
    GradientCorrection,
    Learner,
    LearnerInterrupted,
    NodeData,
    TrainingCallback,
)

__all__ = [
    "FitContext",
    "FitResult",
    "GradientCorrection",
    "Learner",
    "LearnerInterrupted",
    "NodeData",
    "TrainingCallback",
]
