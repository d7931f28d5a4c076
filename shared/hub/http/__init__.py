"""The service chassis: app factory, problem+json errors, probes, metrics."""

from hub.http.app import create_app
from hub.http.health import ReadinessCheck
from hub.http.problems import FieldError, Problem, ProblemDetails, problem_responses, problem_type

__all__ = [
    "FieldError",
    "Problem",
    "ProblemDetails",
    "ReadinessCheck",
    "create_app",
    "problem_responses",
    "problem_type",
]
