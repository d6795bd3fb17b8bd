"""A polite client for the providers' APIs: every call timed out, 429 honoured with its Retry-After,
5xx and network errors retried with exponential backoff, 401/403 stopped at once with a message that
names the credential setting. Credentials travel in headers only and are never logged or echoed.
"""

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from errors import CredentialsRefused, ProviderUnavailable

logger = logging.getLogger("webhooks.recovery")

# The longest single wait a Retry-After may ask for: beyond it the run gives up and tries next time.
MAX_RETRY_AFTER_SECONDS = 60.0
BACKOFF_FIRST_SECONDS = 0.5


@dataclass
class ApiClient:
    """One provider's API at `base`. `credential` names the setting(s) to blame for a 401/403."""

    base: str
    credential: str
    timeout: float
    max_retries: int
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Any = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        """The response to `method path`, once it is neither a 429 nor a 5xx; 401/403 raise
        CredentialsRefused, and anything else is the caller's to read (a 404, say)."""
        url = self.base.rstrip("/") + path
        for attempt in range(self.max_retries + 1):
            wait = BACKOFF_FIRST_SECONDS * 2**attempt
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=dict(headers),
                    params=params,
                    data=data,
                    auth=auth,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                reason = type(exc).__name__
            else:
                if response.status_code in (401, 403):
                    raise CredentialsRefused(
                        f"{method} {path} was refused with {response.status_code}: check {self.credential}"
                    )
                if response.status_code == 429:
                    wait = retry_after(response.headers.get("retry-after"), default=wait)
                    reason = "429"
                elif response.status_code >= 500:
                    reason = str(response.status_code)
                else:
                    return response
            if attempt < self.max_retries:
                logger.info("%s %s: %s, retrying in %.1f s", method, path, reason, wait)
                self.sleep(wait)
        raise ProviderUnavailable(f"{method} {path}: {reason} after {self.max_retries + 1} attempts")

    def get_json(self, path: str, *, headers: Mapping[str, str], params: Any = None) -> Any:
        response = self.request("GET", path, headers=headers, params=params)
        if response.status_code != 200:
            raise ProviderUnavailable(f"GET {path} answered {response.status_code}")
        return json_body(response, f"GET {path}")


def json_body(response: requests.Response, call: str) -> Any:
    """The response's JSON; an answer that is not JSON (a proxy's HTML page) is the provider's fault."""
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailable(
            f"{call} answered {response.status_code} with a body that is not JSON"
        ) from exc


def retry_after(value: str | None, *, default: float) -> float:
    """Seconds to wait per a Retry-After header (delta-seconds; an HTTP date is taken as the default)."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    if seconds > MAX_RETRY_AFTER_SECONDS:
        raise ProviderUnavailable(f"the provider asked to wait {seconds:.0f} s (Retry-After); stopping")
    return max(seconds, 0.0)
