"""The reviewer's job: fetch or take a published dataset, verify, recompute, compare with
what the paper prints, and say PASS / WITHIN-SE / FAIL per number."""

from .claims import ClaimSet, evaluate_claims, load_claims
from .run import AuditResult, audit

__all__ = ["AuditResult", "ClaimSet", "audit", "evaluate_claims", "load_claims"]
