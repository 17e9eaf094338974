"""Typed errors: each carries its HTTP status and a stable machine-readable code.

One middleware renders them (api/middleware.py) as
``{"error": {"code", "message", "details", "request_id"}}``; services raise them and never
build responses.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status: int = 400
    code: str = "bad_request"
    message: str = "The request cannot be processed."
    # A refusal that is itself a recorded fact (a failed login, a detected token reuse): the
    # boundary commits what the service wrote (its audit event) before rendering the error.
    keep_changes: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        keep_changes: bool | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        self.status = status or type(self).status
        self.details = details or {}
        self.headers = headers or {}
        if keep_changes is not None:
            self.keep_changes = keep_changes
        super().__init__(self.message)


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "The request is malformed."


class MalformedJSON(BadRequest):
    code, message = "malformed_json", "The request body is not valid JSON."


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "Authentication is required."


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(AppError):
    status, code, message = 404, "not_found", "Not found."


class MethodNotAllowed(AppError):
    status, code, message = 405, "method_not_allowed", "This method is not allowed on this resource."


class Conflict(AppError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class InvalidState(Conflict):
    code, message = "invalid_state", "This action is not allowed in the current state."


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "The content type is not supported."


class InvalidInput(AppError):
    status, code, message = 422, "validation_error", "The request is not valid."


class InsufficientFunds(InvalidInput):
    code, message = "insufficient_funds", "Not enough available balance."


class TooManyRequests(AppError):
    status, code, message = 429, "too_many_attempts", "Too many attempts; retry later."


class ServiceUnavailable(AppError):
    status, code, message = 503, "service_unavailable", "A dependency is unavailable; retry later."
