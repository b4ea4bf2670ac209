"""Mutual-information analysis of generators: estimators, per-group analysis, encoder metrics."""

from .analyze import analyze, candidate_policies
from .encoder import EncoderReport, encoder_metrics
from .estimators import MIEstimate, estimate
from .report import Candidate, GroupMI, MIReport

__all__ = [
    "Candidate",
    "EncoderReport",
    "GroupMI",
    "MIEstimate",
    "MIReport",
    "analyze",
    "candidate_policies",
    "encoder_metrics",
    "estimate",
]
