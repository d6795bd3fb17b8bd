"""What can stop a recovery run. They are ApiErrors, so POST /payments/{id}/recover answers them in the
one error shape; kept in this package rather than errors.py while recovery is its only user."""

from errors import ApiError


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
