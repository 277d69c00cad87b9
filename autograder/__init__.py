"""Course checks for rice-lab exercises, plus the self-check and cohort-grading commands."""

from typing import Any

__all__ = ["CheckFailed"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `python -m autograder.sandbox` must not pull in the checks' kit first.
    if name == "CheckFailed":
        from autograder._kit import CheckFailed
        return CheckFailed
    raise AttributeError(f"module 'autograder' has no attribute {name!r}")
