"""Errors the command line prints as one line (exit 2): the level below ``cli`` and ``commands``."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    from harness.aggregate import AggregateError
    from harness.datasets.base import DatasetError
    from harness.interfaces import WeightsUnavailableError
    from harness.records import RecordError
    from harness.registry import RegistryError
    from harness.suites import SuiteError

    errors: list[type[BaseException]] = [UserError, DatasetError, WeightsUnavailableError, RecordError,
                                         RegistryError, SuiteError, AggregateError, FileNotFoundError]
    try:
        from leaderboard.frame import LeaderboardError
        errors.append(LeaderboardError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)
