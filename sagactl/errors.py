"""The exit codes and the errors the CLI turns into one-line messages."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # the command ran, and the answer is "no": a canceled sale, a failed expectation
    USAGE = 2  # bad input: nothing was done
    UNAVAILABLE = 3  # NATS or a participant could not be started or reached
    TIMED_OUT = 4  # a wait ran out (`submit --wait --timeout`): the answer is not known yet
    INTERNAL = 70  # a bug in sagactl: rerun with SAGACTL_TRACEBACK=1


class SagactlError(Exception):
    exit_code = ExitCode.FAILED


class UsageError(SagactlError):
    exit_code = ExitCode.USAGE


class Unavailable(SagactlError):
    exit_code = ExitCode.UNAVAILABLE


class TimedOut(SagactlError):
    exit_code = ExitCode.TIMED_OUT
