"""Mutual-information analysis of generators: estimators, per-group analysis, encoder metrics, and
the view-quality report (what candidate policies' views keep under a judge vs how much they change)."""

from .analyze import analyze, candidate_policies
from .encoder import EncoderReport, encoder_metrics
from .estimators import MIEstimate, estimate
from .judges import BUILTIN_JUDGES, load_judge
from .quality_report import PolicyQuality, Recommendation, ViewQualityReport
from .report import Candidate, GroupMI, MIReport
from .view_quality import default_policies, recommend_policy, view_quality

__all__ = [
    "BUILTIN_JUDGES",
    "Candidate",
    "EncoderReport",
    "GroupMI",
    "MIEstimate",
    "MIReport",
    "PolicyQuality",
    "Recommendation",
    "ViewQualityReport",
    "analyze",
    "candidate_policies",
    "default_policies",
    "encoder_metrics",
    "estimate",
    "load_judge",
    "recommend_policy",
    "view_quality",
]
