"""Settings from the environment (pydantic-settings); read once per process via `get_settings()`."""

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Secrets and tokens are comma-separated lists so that an old and a new value can both verify while a
# secret is being rotated. NoDecode stops pydantic-settings from expecting JSON for list fields.
CommaList = Annotated[list[str], NoDecode]

# The prototype's shared secret: convenient on a laptop, refused in production.
DEVELOPMENT_SECRET = "test_secret"  # noqa: S105 (public by design: the value production refuses)

# Setting name -> environment variable, for messages that tell the operator exactly what to set.
SECRET_SETTINGS = {
    "razorpay_webhook_secret": "RAZORPAY_WEBHOOK_SECRET",
    "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "standard_webhook_secret": "STANDARD_WEBHOOK_SECRET",
    "paystack_secret_key": "PAYSTACK_SECRET_KEY",
}


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting must not print the others (pydantic's message would quote
    # the whole environment-derived input, secrets and tokens included, into the start-up log).
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    app_env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///./webhooks.db"
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # The whole body must arrive within this: uvicorn has no body-read deadline, so a client that stops
    # sending would otherwise hold its request (and the server's graceful shutdown) forever.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)

    razorpay_webhook_secret: CommaList = []
    stripe_webhook_secret: CommaList = []
    standard_webhook_secret: CommaList = []
    paystack_secret_key: CommaList = []
    paypal_webhook_id: CommaList = []
    paypal_cert_path: str | None = None
    paypal_cert_hosts: CommaList = [
        "api.paypal.com",
        "api-m.paypal.com",
        "api.sandbox.paypal.com",
        "api-m.sandbox.paypal.com",
    ]
    signature_tolerance_seconds: int = Field(default=300, ge=0)

    # Standard Webhooks bodies are free-form: where the payment fields live is configurable.
    standard_payment_id_path: str = "data.id"
    standard_status_path: str = "data.status"
    standard_amount_path: str = "data.amount"
    standard_currency_path: str = "data.currency"

    api_tokens: CommaList = []

    # Storage: how long a delivery may wait for its commit before it is answered 503 (the provider
    # retries; the retry is then a duplicate if the commit did land), and how much may queue up.
    store_timeout_seconds: float = Field(default=5.0, gt=0)
    write_queue_max: int = Field(default=10_000, ge=1)
    write_batch_max: int = Field(default=256, ge=1)
    # PostgreSQL: transactions in flight per process, each on its own connection (SQLite has one writer).
    write_concurrency: int = Field(default=4, ge=1, le=32)
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_seconds: int = Field(default=3, ge=1)

    @property
    def statement_timeout_ms(self) -> int:
        """PostgreSQL's statement_timeout on every connection (the engine's, the writer's, the
        history's): the store timeout, so no statement outlives the wait it serves."""
        return int(self.store_timeout_seconds * 1000)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Start-up applies pending migrations (serialised across processes); false: refuse to start on a
    # database that is not at head, for deployments that run `make migrate` as a separate release step.
    migrate_on_start: bool = True
    # /metrics needs a read API token when API_TOKENS is set, unless this is true.
    metrics_public: bool = False

    # Forwarding to NATS JetStream (forwarding/): off while NATS_URL is unset.
    nats_url: str | None = None
    nats_stream: str = Field(default="PAYMENTS", pattern=r"^[A-Za-z0-9_-]+$")
    nats_subject_prefix: str = Field(default="payments", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    # nats-py's own options: a .creds file (NGS / decentralised auth), or user and password (in
    # NATS_URL), and TLS with a CA and an optional client certificate.
    nats_creds_file: str | None = None
    nats_tls_ca_file: str | None = None
    nats_tls_cert_file: str | None = None
    nats_tls_key_file: str | None = None
    # How long the stream remembers a Nats-Msg-Id: a re-publish after a crash must come within it.
    nats_duplicate_window_seconds: int = Field(default=3600, ge=10)
    forward_raw_body: bool = False
    # The relay runs in the service process; false when `python -m cli relay` runs it elsewhere.
    forward_in_process: bool = True
    forward_batch_max: int = Field(default=1000, ge=1)
    forward_poll_seconds: float = Field(default=2.0, gt=0)

    @field_validator(
        "razorpay_webhook_secret",
        "stripe_webhook_secret",
        "standard_webhook_secret",
        "paystack_secret_key",
        "paypal_webhook_id",
        "paypal_cert_hosts",
        "api_tokens",
        mode="before",
    )
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def secrets_fit_the_environment(self) -> "Settings":
        if self.app_env == "development":
            if not self.razorpay_webhook_secret:
                self.razorpay_webhook_secret = [DEVELOPMENT_SECRET]
            return self
        # Production needs at least one real provider secret; Razorpay is the one the service grew from.
        if not any(getattr(self, field) for field in SECRET_SETTINGS) and not self.paypal_webhook_id:
            raise ValueError(
                "RAZORPAY_WEBHOOK_SECRET (or another provider's secret) must be set when APP_ENV=production"
            )
        for field, env_name in SECRET_SETTINGS.items():
            if DEVELOPMENT_SECRET in getattr(self, field):
                raise ValueError(f"{env_name} must not be the development secret when APP_ENV=production")
        if not self.api_tokens:
            raise ValueError(
                "API_TOKENS must be set when APP_ENV=production (the read API holds payment data)"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
