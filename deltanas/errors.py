"""Exceptions that services raise; the server interceptor maps each to one gRPC status code."""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base class: carries the gRPC status code the client should see."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    """A request field is missing or out of range; the message starts with the field name."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Cancelled(ServiceError):
    """The client cancelled the call or its deadline passed: the work for it was stopped (nobody reads the answer)."""

    code = grpc.StatusCode.CANCELLED


def require(condition: bool, field: str, problem: str) -> None:
    """Raises InvalidArgument(field, problem) unless `condition` holds."""
    if not condition:
        raise InvalidArgument(field, problem)
