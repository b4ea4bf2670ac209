"""Mutual-information analysis of generators: estimators, per-group analysis, encoder metrics."""

from .analyze import analyze, candidate_policies
from .estimators import MIEstimate, estimate
from .report import Candidate, GroupMI, MIReport

__all__ = ["Candidate", "GroupMI", "MIEstimate", "MIReport", "analyze", "candidate_policies", "estimate"]
