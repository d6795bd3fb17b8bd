"""Settings from the environment (pydantic-settings); read once per process via `get_settings()`."""

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Secrets and tokens are comma-separated lists so that an old and a new value can both verify while a
# secret is being rotated. NoDecode stops pydantic-settings from expecting JSON for list fields.
CommaList = Annotated[list[str], NoDecode]

# The prototype's shared secret: convenient on a laptop, refused in production.
DEVELOPMENT_SECRET = "test_secret"  # noqa: S105 (public by design: the value production refuses)

# test_runner.py's default secret per provider (PayPal's is its simulator's webhook id).
TEST_RUNNER_SECRETS = {
    "razorpay": DEVELOPMENT_SECRET,
    "stripe": "whsec_test_secret",
    "standard": "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ=",
    "paystack": "sk_test_secret",
    "paypal": "WEBHOOK_ID",
    "adyen": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
    "gocardless": "gc_test_secret",
    "paddle": "pdl_ntfset_test_secret",
    "square": "sq_test_signature_key",
    "checkout": "cko_test_secret",
    "mercadopago": "mp_test_secret",
    "cashfree": "cf_test_secret",
}
# Every secret, webhook id and token this repository publishes: test_runner.py's defaults, and the values
# in README.md's and docs/'s recipes and examples. Anyone can sign with them, so production refuses them
# in every secret setting and in API_TOKENS. tests/test_published_secrets.py fails on a published value
# missing here.
PUBLISHED_SECRETS = frozenset(
    {
        *TEST_RUNNER_SECRETS.values(),
        "whsec_manual_stripe_secret",  # docs/providers.md's recipes
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # ... also the Standard Webhooks specification's example
        "sk_test_manual_paystack_key",
        "cf_manual_client_secret",
        "cko_manual_webhook_secret",
        "gc_manual_webhook_secret",
        "mp_manual_webhook_secret",
        "pdl_ntfset_manual_secret",
        "sq_manual_signature_key",
        "8PT597110X687430LKGECATA",
        "old_secret",  # rotation examples
        "new_secret",
        "whsec_old",
        "whsec_new",
        "old",
        "new",
        "tok_old",
        "tok_new",
        "bench_secret",  # BENCHMARKS.md
        "bench_token",
        "ключ-секрет-2025",  # RELIABILITY.md's security probes
    }
)
# Production's shortest API token: a guessable token guards nothing.
MIN_TOKEN_LENGTH = 16

# Setting name -> environment variable, for messages that tell the operator exactly what to set.
SECRET_SETTINGS = {
    "razorpay_webhook_secret": "RAZORPAY_WEBHOOK_SECRET",
    "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "standard_webhook_secret": "STANDARD_WEBHOOK_SECRET",
    "paystack_secret_key": "PAYSTACK_SECRET_KEY",
    "adyen_hmac_key": "ADYEN_HMAC_KEY",
    "gocardless_webhook_secret": "GOCARDLESS_WEBHOOK_SECRET",
    "paddle_webhook_secret": "PADDLE_WEBHOOK_SECRET",
    "square_signature_key": "SQUARE_SIGNATURE_KEY",
    "checkout_webhook_secret": "CHECKOUT_WEBHOOK_SECRET",
    "mercadopago_webhook_secret": "MERCADOPAGO_WEBHOOK_SECRET",
    "cashfree_client_secret": "CASHFREE_CLIENT_SECRET",
}
# Every setting whose values let someone in: the providers' secrets, PayPal's webhook ids, the read tokens.
CREDENTIAL_SETTINGS = {
    **SECRET_SETTINGS,
    "paypal_webhook_id": "PAYPAL_WEBHOOK_ID",
    "api_tokens": "API_TOKENS",
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

    # Providers whose secret is their only setting are configured by it; see docs/providers.md.
    adyen_hmac_key: CommaList = []  # hex, as the Customer Area shows it
    adyen_basic_auth: CommaList = []  # optional user:password values
    gocardless_webhook_secret: CommaList = []
    paddle_webhook_secret: CommaList = []
    square_signature_key: CommaList = []
    # The subscription's notification URL exactly as Square has it: Square signs it with the body.
    square_notification_url: str | None = None
    checkout_webhook_secret: CommaList = []
    checkout_authorization_key: CommaList = []  # optional static Authorization header values
    mercadopago_webhook_secret: CommaList = []
    cashfree_client_secret: CommaList = []

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
    # One by default: while it commits, the next batch gathers every delivery that arrives, so batches
    # are larger and each event costs the server and the event loop less than with several small
    # batches in flight (BENCHMARKS.md, "One transaction in flight"). More pay where a commit is slow
    # against the time a batch takes to gather (a disk whose flushes take milliseconds).
    write_concurrency: int = Field(default=1, ge=1, le=32)
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_seconds: int = Field(default=3, ge=1)

    @property
    def statement_timeout_ms(self) -> int:
        """PostgreSQL's statement_timeout on every connection (the engine's, the writer's, the
        history's): the store timeout, so no statement outlives the wait it serves."""
        return int(self.store_timeout_seconds * 1000)

    # Recovery (recovery/): reading missed events back from the providers' APIs. A provider without its
    # API credentials is skipped. The bases are settings so that tests (and sandboxes) can point them
    # elsewhere. Paystack's API key is PAYSTACK_SECRET_KEY, the same key it signs webhooks with.
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_api_base: str = "https://api-m.paypal.com"
    razorpay_key_id: str | None = None
    razorpay_key_secret: SecretStr | None = None
    razorpay_api_base: str = "https://api.razorpay.com"
    paystack_api_base: str = "https://api.paystack.co"
    # Seconds between periodic recovery runs in the service; 0 turns them off.
    recovery_interval: float = Field(default=0, ge=0)
    # The first periodic run reads this far back; later runs start at the high-water mark less the
    # overlap (an event the provider lists a little late is still read; a re-read one is a duplicate).
    recovery_lookback_seconds: int = Field(default=86_400, ge=1)
    recovery_overlap_seconds: int = Field(default=300, ge=0)
    recovery_max_pages: int = Field(default=1_000, ge=1)
    recovery_page_size: int = Field(default=100, ge=1, le=100)
    recovery_timeout_seconds: float = Field(default=10.0, gt=0)
    recovery_max_retries: int = Field(default=5, ge=0)
    # Items a run reads per second at most (recovery/pace.py), so that it leaves live deliveries most of
    # the CPU and the database; 0: as fast as the provider and the store allow.
    recovery_events_per_second: float = Field(default=0, ge=0)
    # Stripe only: list just the events whose webhooks have not (yet) been delivered.
    stripe_recovery_undelivered_only: bool = False

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Start-up applies pending migrations (serialised across processes); false: refuse to start on a
    # database that is not at head, for deployments that run `make migrate` as a separate release step.
    migrate_on_start: bool = True
    # /metrics needs a read API token when API_TOKENS is set, unless this is true.
    metrics_public: bool = False

    # The ops console (console/): its session cookie is signed with this key. Without it, development
    # signs with a random key per process (sessions end at a restart); production refuses to start.
    console_session_secret: str | None = Field(default=None, min_length=32)
    console_session_hours: float = Field(default=8.0, gt=0, le=24 * 7)

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
    # Copies of each message the stream keeps, on as many servers of a NATS cluster (3 survives the loss
    # of one server); 1 on a single server.
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    forward_raw_body: bool = False
    # The relay runs in the service process; false when `python -m cli relay` runs it elsewhere.
    forward_in_process: bool = True
    forward_batch_max: int = Field(default=1000, ge=1)
    forward_poll_seconds: float = Field(default=2.0, gt=0)
    # Under load (a cycle of 100 events or more), the relay waits this long before its next cycle so
    # that cycles carry more events each (forwarding/relay.py); 0 runs them back to back.
    forward_gather_seconds: float = Field(default=0.05, ge=0, le=5)

    # Destinations (destinations/): the YAML file declaring the services events are POSTed to, signed
    # with Standard Webhooks. Unset: nothing is forwarded over HTTP.
    destinations_file: str | None = None
    # How often the dispatcher looks for work besides being woken (another instance's commits, a
    # pause or replay made by another process).
    destinations_poll_seconds: float = Field(default=1.0, gt=0)
    # The workers that send run in the service process; false when `python -m cli destinations run`
    # runs them elsewhere (the service still writes the filters, so that its commits owe events).
    destinations_in_process: bool = True

    @field_validator(
        "razorpay_webhook_secret",
        "stripe_webhook_secret",
        "standard_webhook_secret",
        "paystack_secret_key",
        "paypal_webhook_id",
        "paypal_cert_hosts",
        "adyen_hmac_key",
        "adyen_basic_auth",
        "gocardless_webhook_secret",
        "paddle_webhook_secret",
        "square_signature_key",
        "checkout_webhook_secret",
        "checkout_authorization_key",
        "mercadopago_webhook_secret",
        "cashfree_client_secret",
        "api_tokens",
        mode="before",
    )
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def published_settings(self) -> list[str]:
        """The variables that hold a value from PUBLISHED_SECRETS (development only: production refuses)."""
        return [
            env_name
            for field, env_name in CREDENTIAL_SETTINGS.items()
            if PUBLISHED_SECRETS.intersection(getattr(self, field))
        ]

    @model_validator(mode="after")
    def secrets_fit_the_environment(self) -> "Settings":
        configured = any(getattr(self, field) for field in SECRET_SETTINGS) or self.paypal_webhook_id
        if self.app_env == "development":
            # The prototype's secret only while nothing is configured: RAZORPAY_WEBHOOK_SECRET="" (set,
            # empty) turns Razorpay off, and so does configuring only other providers.
            if "razorpay_webhook_secret" not in self.model_fields_set and not configured:
                self.razorpay_webhook_secret = [DEVELOPMENT_SECRET]
            return self
        # Production needs at least one real provider secret; Razorpay is the one the service grew from.
        if not configured:
            raise ValueError(
                "RAZORPAY_WEBHOOK_SECRET (or another provider's secret) must be set when APP_ENV=production"
            )
        if published := self.published_settings():
            raise ValueError(
                f"{', '.join(published)} must not hold a secret published in this repository "
                "(test_runner.py's defaults, the docs' examples, PayPal's simulator id WEBHOOK_ID) "
                "when APP_ENV=production"
            )
        if not self.api_tokens:
            raise ValueError(
                "API_TOKENS must be set when APP_ENV=production (the read API holds payment data)"
            )
        if any(len(token) < MIN_TOKEN_LENGTH for token in self.api_tokens):
            raise ValueError(
                f"API_TOKENS must each be at least {MIN_TOKEN_LENGTH} characters when APP_ENV=production"
            )
        if not self.console_session_secret:
            raise ValueError(
                "CONSOLE_SESSION_SECRET must be set when APP_ENV=production (it signs the ops console's "
                "session cookies; at least 32 characters, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
