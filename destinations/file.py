"""The destinations file (DESTINATIONS_FILE): YAML, validated with Pydantic at start-up.

Destinations are declared by the operator only; nothing in a request can add or change one. A file
that does not validate stops start-up with a message naming the entry and the field.
"""

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from errors import DestinationsFileInvalid
from security import decode_standard_secret

NAME = r"^[a-z0-9-]+$"
Pattern = Annotated[str, Field(min_length=1, max_length=255)]


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, max_length=64)
    url: str
    # Exactly one: the Standard Webhooks secret itself (whsec_<base64>), or the variable that holds it.
    secret: SecretStr | None = None
    secret_env: str | None = None
    providers: list[str] | None = None  # None: every provider
    event_types: list[Pattern] | None = None  # `*` matches any run of characters
    statuses: list[str] | None = None  # normalised statuses
    # Per payment, an event waits while an earlier one of the same payment is still owed.
    ordered: bool = True
    max_in_flight: int = Field(default=8, ge=1, le=256)
    rate_per_second: float | None = Field(default=None, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=12, ge=1)  # every attempt, the first included
    max_age_seconds: float = Field(default=259_200, gt=0)
    # Backoff: attempt n waits a random time in [0, min(max, base * 2**(n-1))] ("full jitter").
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("url")
    @classmethod
    def http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/?#\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def one_secret(self) -> "Destination":
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret and secret_env")
        return self

    @property
    def key(self) -> bytes:
        """The HMAC key: the secret, base64-decoded after `whsec_` (resolved by `load`)."""
        assert self.secret is not None
        return decode_standard_secret(self.secret.get_secret_value())

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]

    def matches(self, *, provider: str, event_type: str | None, status: str | None) -> bool:
        if self.providers is not None and provider not in self.providers:
            return False
        if self.statuses is not None and status not in self.statuses:
            return False
        if self.event_types is not None:
            return any(wildcard(pattern).fullmatch(event_type or "") for pattern in self.event_types)
        return True


class DestinationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destinations: list[Destination] = Field(default_factory=list)
    version: Literal[1] = 1

    @model_validator(mode="after")
    def unique_names(self) -> "DestinationsFile":
        seen: set[str] = set()
        for destination in self.destinations:
            if destination.name in seen:
                raise ValueError(f"destination name {destination.name!r} is declared twice")
            seen.add(destination.name)
        return self


def wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def load(path: str, *, environ: dict[str, str] | None = None) -> list[Destination]:
    """The file's destinations with their secrets resolved and checked; DestinationsFileInvalid when the
    file is missing, not YAML, or any entry or field is wrong."""
    env = os.environ if environ is None else environ
    try:
        document: Any = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DestinationsFileInvalid(f"DESTINATIONS_FILE {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise DestinationsFileInvalid(f"DESTINATIONS_FILE {path}: not valid YAML ({exc})") from None
    try:
        parsed = DestinationsFile.model_validate(document or {})
    except ValidationError as exc:
        raise DestinationsFileInvalid(f"DESTINATIONS_FILE {path}: {describe(exc, document)}") from None
    resolved: list[Destination] = []
    for index, destination in enumerate(parsed.destinations):
        where = f"destinations[{index}] ({destination.name})"
        secret = destination.secret
        if destination.secret_env is not None:
            value = env.get(destination.secret_env)
            if not value:
                raise DestinationsFileInvalid(
                    f"DESTINATIONS_FILE {path}: {where}: secret_env: {destination.secret_env} is not set"
                )
            secret = SecretStr(value)
        field = "secret" if destination.secret_env is None else f"secret_env ({destination.secret_env})"
        assert secret is not None
        try:
            decode_standard_secret(secret.get_secret_value())
        except ValueError as exc:
            raise DestinationsFileInvalid(f"DESTINATIONS_FILE {path}: {where}: {field}: {exc}") from None
        resolved.append(destination.model_copy(update={"secret": secret}))
    return resolved


def describe(exc: ValidationError, document: Any) -> str:
    """Pydantic's errors as `destinations[1] (orders): url: must be ...`, never quoting the input (it
    may hold a secret)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        location = list(error["loc"])
        where = ""
        if len(location) >= 2 and location[0] == "destinations" and isinstance(location[1], int):
            index = location[1]
            name = _entry_name(document, index)
            where = f"destinations[{index}]" + (f" ({name})" if name else "")
            location = location[2:]
        field = ".".join(str(part) for part in location)
        message = error["msg"].removeprefix("Value error, ")
        lines.append(": ".join(part for part in (where, field, message) if part))
    return "; ".join(lines)


def _entry_name(document: Any, index: int) -> str | None:
    try:
        name = document["destinations"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None
