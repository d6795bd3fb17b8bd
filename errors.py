"""The API's error vocabulary: one exception per documented error code, each with its HTTP status.

Every error the service answers with is `{"error": {"code": ..., "message": ...}}`, rendered by
api/error_shape.py. Plain Python, so security.py raises these without knowing anything of HTTP.
"""


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidJson(ApiError):
    code = "invalid_json"


class InvalidPayload(ApiError):
    code = "invalid_payload"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeout(ApiError):
    status_code = 408
    code = "request_timeout"


class ClientDisconnected(ApiError):
    """The client left before sending its whole body. Nobody receives the answer; the status (nginx's
    convention) only labels the delivery's log line and metrics, instead of a 500 with a traceback."""

    status_code = 499
    code = "client_disconnected"


class SignatureError(ApiError):
    """A delivery whose signature is missing, malformed, wrong or too old: never stored."""

    status_code = 403
    code = "signature_invalid"


class SignatureMissing(SignatureError):
    code = "signature_missing"


class SignatureInvalid(SignatureError):
    code = "signature_invalid"


class SignatureExpired(SignatureError):
    code = "signature_expired"


class SignatureReused(SignatureInvalid):
    """An authentic signature presented with a body other than the one it was first accepted with: the
    database found the delivery's signed key (PayPal's transmission id) stored with another body."""


class UnknownProvider(ApiError):
    status_code = 404
    code = "unknown_provider"


class ProviderNotConfigured(ApiError):
    status_code = 404
    code = "provider_not_configured"


class PaymentNotFound(ApiError):
    status_code = 404
    code = "payment_not_found"


class EventNotFound(ApiError):
    status_code = 404
    code = "event_not_found"


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class StorageUnavailable(ApiError):
    status_code = 503
    code = "storage_unavailable"


class PaymentAmbiguous(ApiError):
    status_code = 409
    code = "payment_ambiguous"


class InvalidCursor(ApiError):
    # The same status and code as any other malformed parameter: to a client it is one.
    status_code = 422
    code = "validation_error"


# --- recovery: what stops a run against a provider's API (recovery/) --------------------------------


class RecoveryError(ApiError):
    status_code = 502
    code = "recovery_failed"


class CredentialsRefused(RecoveryError):
    """The provider answered 401/403: the message names the setting to fix. Never retried."""

    code = "provider_credentials_refused"


class ProviderUnavailable(RecoveryError):
    """Still 429 or 5xx after the retries, unreachable, or an answer not in the documented shape."""

    code = "provider_unavailable"


class RecoveryNotSupported(ApiError):
    status_code = 404
    code = "recovery_not_supported"


# --- destinations: signed HTTP forwarding (destinations/) --------------------------------------------


class DestinationNotFound(ApiError):
    status_code = 404
    code = "destination_not_found"


class DestinationsFileInvalid(Exception):
    """DESTINATIONS_FILE cannot be read or does not validate: start-up stops with this message, which
    names the file, the entry and the field. Never answered over HTTP (the service does not start)."""
