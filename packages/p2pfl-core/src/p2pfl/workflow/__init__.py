"""Workflows and stages (plugin kind ``stages``)."""

from p2pfl.workflow.base import RoundContext, Stage, Workflow
from p2pfl.workflow.plan import LearningPlan, PlanError

__all__ = ["LearningPlan", "PlanError", "RoundContext", "Stage", "Workflow"]
