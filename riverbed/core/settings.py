"""The one typed place for configuration.

Every process builds :class:`Settings` once (from ``RIVERBED_*`` environment variables and,
for the three server URLs, their conventional unprefixed names) and hands it down. Unset server
URLs mean "use the embedded engine", which is the zero-configuration default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The names of this machine's loopback interface, as a bind address or a Host header.
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


#: The limits of an analyst query, as ClickHouse names them (see ``sql_role_limits``).
SQL_LIMITS = frozenset(
    {"max_execution_time", "max_memory_usage", "max_result_rows", "max_result_bytes", "max_threads"}
)


class Settings(BaseSettings):
    """Riverbed configuration; see ``docs/operations.md`` for every variable."""

    model_config = SettingsConfigDict(env_prefix="RIVERBED_", extra="ignore")

    data_dir: Path = Field(default=Path(".riverbed"), description="Embedded engines' data.")
    schemas_dir: Path | None = Field(
        default=None, description="Stream catalog and .avsc files; default: the bundled ones."
    )

    metrics_file: Path | None = Field(
        default=None, description="Declared metrics (YAML); default: metrics.yaml in data_dir."
    )

    # Scale-out: Faust worker processes sharing the agents' consumer group (`riverbed up` starts
    # this many), and Bytewax workers in the flow process (partitions and keys are split).
    agent_workers: int = Field(default=1, ge=1, le=64)
    flow_workers: int = Field(default=1, ge=1, le=64)
    instance: int = Field(default=0, ge=0, description="Set by the supervisor per replica.")

    kafka_bootstrap: str | None = Field(
        default=None, validation_alias=AliasChoices("RIVERBED_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RIVERBED_REDIS_URL", "REDIS_URL")
    )
    clickhouse_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RIVERBED_CLICKHOUSE_URL", "CLICKHOUSE_URL")
    )
    clickhouse_database: str = "riverbed"
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RIVERBED_DATABASE_URL", "DATABASE_URL"),
        description="The control plane's database (SQLAlchemy URL); default SQLite in data_dir.",
    )
    # Logins (control.tokens): the secret that signs access tokens, and their lifetimes.
    jwt_secret: SecretStr | None = Field(default=None, description="32+ random bytes.")
    jwt_secret_file: Path | None = Field(default=None, description="A file holding it.")
    # Or sign with a private key (EdDSA or RS256; public keys at /.well-known/jwks.json).
    jwt_private_key_file: Path | None = Field(default=None, description="PEM, Ed25519 or RSA.")
    jwt_public_keys_file: Path | None = Field(default=None, description="Older keys (PEM).")
    # Sealing stored secrets (control.sealed): AES-256-GCM key, and old keys that still open.
    secrets_key: SecretStr | None = Field(default=None, description="32 bytes, hex or base64.")
    secrets_key_file: Path | None = Field(default=None, description="A file holding it.")
    secrets_old_keys: str = Field(default="", description="Comma-separated, for rotation.")
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=365)
    # Rate limits (api.ratelimit): requests/s and burst per key or user, per address when
    # anonymous, logins per address per minute; per-role rates as JSON ({"producer": 500}).
    rate_limits: bool = True
    rate_limit_per_second: float = Field(default=1000.0, gt=0)
    rate_limit_burst: int = Field(default=2000, ge=1)
    anonymous_rate_limit_per_second: float = Field(default=10.0, gt=0)
    anonymous_rate_limit_burst: int = Field(default=30, ge=1)
    login_rate_limit_per_minute: float = Field(default=20.0, gt=0)
    role_rate_limits: dict[str, float] = Field(default_factory=dict)

    host: str = "127.0.0.1"
    # Host headers the API answers (comma-separated); loopback names are added when it listens
    # on loopback. Empty while listening on every interface: set it behind a public name.
    allowed_hosts: str = ""
    # Web origins (scheme://host[:port], comma-separated) allowed to call the API from a
    # browser (CORS) and to use its session cookie; none by default.
    cors_origins: str = ""
    api_port: int = 8080
    kafka_port: int = 0  # 0: pick a free port when embedded
    redis_port: int = 0
    clickhouse_port: int = 0  # the embedded engine's HTTP port, on 127.0.0.1 only

    topic_partitions: int = 3
    # Consumer-group joins wait about session.timeout/2; 6 s keeps restarts and tests quick.
    kafka_session_timeout_ms: int = 6000
    producer_linger_ms: int = 5
    producer_timeout_ms: int = 10_000
    # "none" by default: on loopback compression only costs CPU, and Faust's aiokafka needs
    # extra codec packages to read lz4/zstd. Production Kafka: "lz4" (then add cramjam).
    kafka_compression: str = "none"

    max_body_bytes: int = 5 * 1024 * 1024  # an ingest request
    max_events_per_request: int = 10_000
    # One event, as JSON: under librdkafka's 1 MB message limit with room for the record's
    # framing, so an accepted event (or its dead letter) always fits one Kafka message.
    max_event_bytes: int = 900_000
    max_json_body_bytes: int = 1024 * 1024  # the body of every other route that takes one
    body_read_timeout_seconds: float = 30.0  # a client slower than this gets 408
    # The request line and headers must arrive within this (else 408, connection closed).
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Open connections before new ones get 503: for requests, and on top of it for live
    # (SSE) streams, so viewers never take the room producers and probes need.
    max_connections: int = 1000
    live_max_connections: int = Field(default=10_000, ge=1)
    redis_connections: int = Field(default=100, ge=4)  # the API's pool; callers queue past it

    window_seconds: int = 60
    allowed_lateness_seconds: int = 10
    # A changed open window goes out at once after a quiet interval, else at most this long
    # after the change (coalesced): what dashboards wait, against flow and Redis work.
    live_emit_interval_seconds: float = Field(default=0.1, gt=0)
    # How long a group may be quiet before its windows close by the clock; longer than any
    # restart of an upstream process, so events it held up are not treated as late.
    window_idle_grace_seconds: float = 30.0
    # Bytewax epoch: how often window state and source offsets are snapshotted together.
    flow_snapshot_seconds: float = 1.0
    # How long a closed window remembers which events it counted, so that a copy redelivered by
    # a restarted agent after the window closed is ignored rather than dead-lettered as late.
    late_dedup_seconds: float = 120.0
    stream_delete_drain_seconds: float = Field(
        default=30.0,
        description="How long DELETE /v1/streams/{s} waits for the agents and sinks to process "
        "what the stream accepted before answering 503 (repeat the DELETE to finish).",
    )
    dedup_horizon_seconds: int = 24 * 3600
    # The ingest journal (riverbed.core.journal): accepted events fsync'd in the data dir
    # before the 202, produced again into a broker that restarted empty. ``riverbed up`` turns
    # it on for its in-memory broker; a real Kafka cluster is durable and needs none.
    journal: bool = False
    journal_max_bytes: int = Field(default=4 * 1024**3, ge=1024 * 1024)
    journal_segment_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    journal_segment_seconds: float = Field(default=30.0, gt=0)
    # A segment is deleted once its events are in ClickHouse and it is older than this, so
    # that the windows open when a broker died can be computed again from it.
    journal_retention_seconds: float = Field(default=900.0, ge=0)
    max_future_skew_seconds: int = 300

    sink_batch_size: int = 5000
    sink_batch_timeout_seconds: float = 0.5
    recent_series_length: int = 120
    # Updates each live log keeps for reconnecting clients (Last-Event-ID), about.
    live_history_length: int = Field(default=50_000, ge=100)
    # Processed events per second and stream the agents copy to the live tail (0: none).
    live_tail_events_per_second: float = Field(default=20.0, ge=0)
    # Updates an SSE client may fall behind before it is cut (it reconnects and catches up),
    # and live connections one key, user or address may hold per API process.
    live_queue_length: int = Field(default=1000, ge=10)
    live_connections_per_caller: int = Field(default=100, ge=1)

    query_row_limit: int = 10_000
    query_timeout_seconds: float = 10.0
    # An analyst's query must not take the engine's memory from the sink.
    query_max_memory_bytes: int = 2 * 1024**3

    # The analysts' ClickHouse endpoint (api.sql_gateway): its port, query slots (in all, per
    # key), how long a query waits for one, and the limits every analyst query runs with.
    sql_port: int = 8123
    sql_slots: int = Field(default=4, ge=1, le=256)
    sql_slots_per_key: int = Field(default=2, ge=1, le=256)
    sql_queue_seconds: float = Field(default=10.0, ge=0)
    sql_timeout_seconds: float = Field(default=60.0, gt=0)
    sql_max_result_rows: int = Field(default=100_000_000, ge=1)
    sql_max_result_bytes: int = Field(default=1024**3, ge=1)
    # Threads per analyst query: on a small machine, one, so the sink keeps a core.
    sql_max_threads: int = Field(default=1, ge=1, le=256)
    sql_max_query_bytes: int = Field(default=256 * 1024, ge=1024)
    # Per-role limits, ClickHouse setting names ({"admin": {"max_execution_time": 600}}).
    sql_role_limits: dict[str, dict[str, float]] = Field(default_factory=dict)
    # An audit record per analyst query (who asked what): off only where volume forbids it.
    sql_audit: bool = True

    sse_heartbeat_seconds: float = 15.0

    @field_validator("sql_role_limits")
    @classmethod
    def _known_limits(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for role, limits in value.items():
            unknown = sorted(set(limits) - SQL_LIMITS)
            if unknown:
                raise ValueError(
                    f"sql_role_limits[{role!r}]: unknown limits {unknown}; known: "
                    f"{sorted(SQL_LIMITS)}"
                )
            if any(v <= 0 for v in limits.values()):
                raise ValueError(f"sql_role_limits[{role!r}]: limits are positive numbers")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def on_loopback(self) -> bool:
        """Listening only on this machine (development); else reachable from a network."""
        return self.host in LOOPBACK

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url is None

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def clickhouse_secret_path(self) -> Path:
        """The embedded engine's password for the pipeline's own processes (mode 0600)."""
        return self.data_dir / "clickhouse.secret"

    @property
    def metrics_path(self) -> Path:
        return self.metrics_file or self.data_dir / "metrics.yaml"

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def flow_recovery_dir(self) -> Path:
        return self.data_dir / "flow-recovery"

    def require_kafka(self) -> str:
        """Bootstrap servers for a child process; the supervisor fills it in when embedded."""
        if not self.kafka_bootstrap:
            raise RuntimeError("KAFKA_BOOTSTRAP is not set and no embedded broker was started")
        return self.kafka_bootstrap

    def require_redis(self) -> str:
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set and no embedded Redis was started")
        return self.redis_url

    def require_clickhouse(self) -> str:
        if not self.clickhouse_url:
            raise RuntimeError("CLICKHOUSE_URL is not set and no embedded ClickHouse was started")
        return self.clickhouse_url
