"""Errors by kind. A :class:`UserError` (or a subclass) is bad input: the command line prints
its message as one line naming the input, exit 2. Anything else that escapes a command is a
bug: reported as an internal error naming the command and the exception, exit 1.

The kinds live where their input is read (``DatasetError`` in ``harness.datasets``,
``RecordError`` in ``harness.results.records``, ``RegistryError`` here in ``core``) and all
derive from :class:`UserError`, so this module imports nothing and the CLI catches one class.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class OptionError(UserError, ValueError):
    """A command-line option (or a suite's option) with a bad value or in a bad combination;
    the message names the option."""


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is reported as bad input (exit 2): a :class:`UserError`, or a file the
    user named that is not there.

    >>> is_user_error(OptionError("--batch-size 0")), is_user_error(ValueError("a bug"))
    (True, False)
    """
    return isinstance(exc, (UserError, FileNotFoundError))
