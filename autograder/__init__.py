"""Course checks for rice-lab exercises, plus the self-check and cohort-grading commands."""

from autograder._kit import CheckFailed, fresh

__all__ = ["CheckFailed", "fresh"]
