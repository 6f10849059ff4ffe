"""The one settings object: defaults, then ``lakehouse.yaml``, then ``LAKEHOUSE_*`` environment variables."""

from __future__ import annotations

import hashlib
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from lakehouse.errors import ConfigError

if TYPE_CHECKING:
    from upath import UPath

Engine = Literal["local", "connect", "spark"]
DeidProfile = Literal["expert_determination", "safe_harbor"]
DocumentsText = Literal["deidentified", "exclude"]
FreeText = Literal["deidentified", "exclude"]
SailMode = Literal["local", "local-cluster"]

ENV_PREFIX = "LAKEHOUSE_"
# settings of earlier releases that were replaced: name -> (new name, old value -> new value)
RENAMED: dict[str, tuple[str, dict[str, str]]] = {
    "date_policy": ("deid_profile", {"shift": "expert_determination", "year": "safe_harbor"}),
}
CONFIG_FILE_ENV = "LAKEHOUSE_CONFIG"
# object stores a root may live on (fsspec / delta-rs / Sail scheme names)
OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "azure")


def _object_store_scheme(value: str) -> str | None:
    """The scheme of an object-store URL (``s3``), or None for a path or another kind of URL."""
    scheme, sep, _ = value.partition("://")
    return scheme.lower() if sep and scheme.lower() in OBJECT_STORE_SCHEMES else None


def _root_value(value: object) -> object:
    """A root as given: an object-store URL stays a string (``s3://bucket/prefix``, no trailing slash); a plain
    path or a ``file://`` URL becomes a :class:`Path`; any other scheme is refused."""
    if isinstance(value, Path) or not isinstance(value, str):
        return value
    scheme, sep, rest = value.partition("://")
    if not sep:
        return Path(value)
    scheme = scheme.lower()
    if scheme == "file":
        return Path(rest if rest.startswith("/") else "/" + rest)
    if scheme not in OBJECT_STORE_SCHEMES or not rest.strip("/"):
        raise ValueError(f"{value!r} is not a lakehouse root: use a path, file://, or a bucket URL "
                         f"({', '.join(s + '://' for s in OBJECT_STORE_SCHEMES[:1] + ('gs', 'abfss'))}...)")
    _require_file_system(scheme)
    return f"{scheme}://{rest.rstrip('/')}"


def _require_file_system(scheme: str) -> None:
    """An object-store root needs its fsspec file system installed (an extra of this package)."""
    import fsspec  # deferred: only object-store roots need it

    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError):
        extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(scheme, "azure")
        raise ValueError(f"a {scheme}:// root needs its file system: pip install 'clinical-lakehouse[{extra}]'") \
            from None


def _iana_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone name (e.g. America/New_York, Etc/GMT+5, UTC)") \
            from None
    return value


def as_location(value: str | Path) -> Path | UPath:
    """An input or output location as given on a command line: a local :class:`Path`, or for an object-store URL
    (``s3://bucket/drop``) a :class:`upath.UPath` (a plain ``Path`` would turn ``s3://b`` into ``s3:/b``)."""
    if isinstance(value, str) and _object_store_scheme(value):
        from upath import UPath  # deferred: only object-store locations need fsspec

        return UPath(value)
    return Path(value).expanduser()


class Settings(BaseModel):
    """Everything a run can be told. Secrets are ``SecretStr`` so they never print."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path | str = Field(
        default=Path("lakehouse"), description="lakehouse root (landing, bronze, ...): a path, file://, or an "
        "object-store URL (s3://bucket/prefix, abfss://..., gs://...)")
    work_dir: Path | None = Field(
        default=None, description="local folder for what an object-store root keeps on this machine (landing, "
        "engine logs, staging, reports, MLflow); default $XDG_STATE_HOME/clinical-lakehouse/roots/<root digest>")
    engine: Engine = "local"
    spark_remote: str | None = Field(default=None, description="Spark Connect URL for engine=connect")
    spark_master: str = Field(default="local[*]", description="master for engine=spark")
    sail_debug: bool = Field(default=False, description="verbose Sail server log (RUST_LOG=info)")
    sail_mode: SailMode = Field(
        default="local", description="the embedded engine's mode: 'local' (one process, threads) or 'local-cluster' "
        "(a driver and workers exchanging data over RPC, as Sail runs on Kubernetes)")
    pseudonym_key: SecretStr | None = Field(default=None, description="HMAC key for pseudonyms")
    pseudonym_key_file: Path | None = Field(default=None, description="file holding the HMAC key")
    audit_key_file: Path | None = Field(
        default=None, description="file holding the run log's audit (HMAC) key, outside the root; default "
        "$XDG_CONFIG_HOME/clinical-lakehouse/audit.key, created once")
    audit_anchor: Path | None = Field(
        default=None, description="append-only file outside the root where the run log's head is anchored after "
        "every run; default $XDG_STATE_HOME/clinical-lakehouse/anchors/<root digest>.log")
    deid_profile: DeidProfile = Field(
        default="expert_determination", description="de-identification method (45 CFR 164.514(b)): "
        "'expert_determination' (per-patient date shift, keyed pseudonyms) or 'safe_harbor' (year-only dates, "
        "random surrogate keys, durations computed from true dates)")
    max_shift_days: int = Field(default=365, ge=1, le=3650)
    silver_incremental_limit: float = Field(
        default=0.5, ge=0.0, le=1.0, description="an incremental Silver build that would recompute more than this "
        "share of Bronze's records builds in full instead (0: always full, 1: incremental whenever allowed)")
    silver_workers: int = Field(
        default=2, ge=1, le=32, description="Silver domains built at the same time (threads sharing one engine "
        "session); 1 builds them one after the other. Does not change what is built")
    facility_timezone: str = Field(
        default="UTC", description="IANA time zone of HL7 v2 timestamps that carry no offset (the facility's local "
        "time, daylight saving included), e.g. America/New_York; a fixed UTC-5 is Etc/GMT+5")
    facility_timezones: dict[str, str] = Field(
        default_factory=dict, description="IANA zone per sending facility, for feeds from facilities in other zones: "
        "MSH-4 namespace id or universal id -> zone (YAML mapping, or FACILITY=Zone,... in the environment); "
        "facilities not listed use facility_timezone")
    documents_text: DocumentsText = Field(
        default="deidentified", description="text of clinical documents in silver.document: 'deidentified' (scrubbed "
        "of the patient's identifiers and PHI patterns) or 'exclude' (never stored: NULL)")
    free_text: FreeText = Field(
        default="deidentified", description="every free-text column of Silver (the scrub_text rules of "
        "silver/deid/rules.csv: observation text, dosage text, report conclusions, imaging descriptions, goals, "
        "documents): 'deidentified' (scrubbed of known identifiers of the patient and their contacts, and PHI "
        "patterns) or 'exclude' (never stored: NULL; codes, dates and statuses stay)")
    as_of_date: date | None = Field(
        default=None, description="the day ages (90+) are judged at (default: today); a fixed clock for tests and "
        "reproducible rebuilds")
    dbt_target: str = "local"
    mlflow_tracking_uri: str | None = None
    openlineage_url: str | None = None
    serve_token: SecretStr | None = Field(
        default=None, description="bearer token BI clients of `lakehouse serve` must send (16+ characters); "
        "required with a non-loopback --host")
    serve_token_file: Path | None = Field(default=None, description="file (mode 0600) holding the serve token")

    @field_validator("root", mode="before")
    @classmethod
    def _root(cls, value: object) -> object:
        return _root_value(value)

    @field_validator("facility_timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        return _iana_zone(value)

    @field_validator("facility_timezones", mode="before")
    @classmethod
    def _zones_by_facility(cls, value: object) -> object:
        if isinstance(value, str):  # FACILITY=Zone,FACILITY=Zone (an environment variable)
            pairs = [p.partition("=") for p in value.split(",") if p.strip()]
            if any(not sep or not k.strip() for k, sep, _ in pairs):
                raise ValueError(f"{value!r} is not FACILITY=Zone,FACILITY=Zone (e.g. EASTHOSP=America/New_York)")
            value = {k.strip(): v.strip() for k, _, v in pairs}
        if isinstance(value, dict):
            # MSH-4 is matched case-insensitively: one facility is one key however a sender spells it
            return {str(k).strip().upper(): _iana_zone(str(v)) for k, v in value.items()}
        return value

    @property
    def as_of_day(self) -> date:
        """The day ages are judged at: ``as_of_date`` or today."""
        return self.as_of_date or date.today()

    @property
    def remote_root(self) -> str | None:
        """The object-store URL of the root (``s3://bucket/prefix``), or None for a local root."""
        return self.root if isinstance(self.root, str) else None

    @property
    def root_uri(self) -> str:
        """The root as the engine, delta-rs and dbt name it: the URL, or the absolute local path."""
        return self.remote_root or str(self.root_path)

    @property
    def root_path(self) -> Path:
        """The local folder of this lakehouse: the root itself, or for an object-store root its local work
        folder (``work_dir``), which holds what stays on this machine (landing, logs, staging, reports)."""
        if isinstance(self.root, Path):
            return self.root.expanduser().resolve()
        if self.work_dir is not None:
            return self.work_dir.expanduser().resolve()
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "clinical-lakehouse" / "roots" / hashlib.sha256(self.root.encode()).hexdigest()[:16]

    @property
    def system_dir(self) -> Path:
        """Local working files of the system layer (logs, engine, staging, reports, locks); its Delta tables are
        at ``table_path("_system", ...)``, with the root."""
        return self.root_path / "_system"

    @property
    def landing_dir(self) -> Path:
        return self.root_path / "landing"

    def layer_path(self, layer: str) -> Path | UPath:
        """``<root>/<layer>``: the folder of one layer's tables (bronze, silver, gold, quarantine, _system); on an
        object store a :class:`upath.UPath` (the same path API over fsspec)."""
        if self.remote_root:
            from upath import UPath  # deferred: only object-store roots need fsspec

            return UPath(f"{self.remote_root}/{layer}")
        return self.root_path / layer

    def table_path(self, layer: str, table: str) -> Path | UPath:
        """``<root>/<layer>/<table>``: where the Delta table ``<layer>.<table>`` lives (the one place that says so)."""
        return self.layer_path(layer) / table

    def redacted(self) -> dict[str, object]:
        """Settings as a dict that is safe to log or hash (no secret values)."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                out[name] = "***" if value is not None else None
            else:
                out[name] = str(value) if isinstance(value, Path | date) else value
        return out


PRIVATE_UMASK = 0o077


def restrict_new_files() -> None:
    """Files and folders this process creates are its owner's only (landing, Bronze, quarantine and the run log
    hold PHI: HIPAA 164.312(a) access control). The embedded engine applies the same mask to what it writes."""
    os.umask(PRIVATE_UMASK)


def _from_env(environ: dict[str, str]) -> dict[str, str]:
    fields = Settings.model_fields
    values: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_FILE_ENV:
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in RENAMED:
            _refuse_renamed({name: value}, key)
        if name not in fields:
            known = ", ".join(ENV_PREFIX + f.upper() for f in fields)
            raise ConfigError(f"unknown setting {key}; known: {known}")
        values[name] = value
    return values


def _from_file(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc.__class__.__name__}); fix the file or remove it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping of setting: value")
    return data


def _refuse_renamed(values: dict[str, object], where: str) -> None:
    for old, (new, mapping) in RENAMED.items():
        if old in values:
            value = str(values[old])
            hint = f"{new}: {mapping[value]}" if value in mapping else \
                f"{new} ({', '.join(f'{k} -> {v}' for k, v in mapping.items())})"
            raise ConfigError(f"setting {old!r} ({where}) was replaced by {new!r}: write {hint}")


def load_settings(config_file: Path | None = None, environ: dict[str, str] | None = None,
                  **overrides: object) -> Settings:
    """Defaults < lakehouse.yaml < LAKEHOUSE_* env < explicit overrides."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    if config_file is None and environ.get(CONFIG_FILE_ENV):
        config_file = Path(environ[CONFIG_FILE_ENV])
        if not config_file.exists():
            raise ConfigError(f"{CONFIG_FILE_ENV}={config_file} does not exist; point it at a lakehouse.yaml")
    if config_file is None and Path("lakehouse.yaml").exists():
        config_file = Path("lakehouse.yaml")
    if config_file is not None:
        from_file = _from_file(config_file)
        # a relative root in a settings file is relative to that file, not to the current directory
        if isinstance(from_file.get("root"), str) and "://" not in from_file["root"]:
            root = Path(from_file["root"]).expanduser()
            from_file["root"] = root if root.is_absolute() else (config_file.resolve().parent / root)
        _refuse_renamed(from_file, str(config_file))
        values.update(from_file)
    values.update(_from_env(environ))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    _refuse_renamed(overrides, "argument")
    values.update(overrides)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid setting {field!r}: {first['msg']}; set it in lakehouse.yaml or {ENV_PREFIX}{field.upper()}"
        ) from None
    if settings.engine == "connect" and not settings.spark_remote:
        raise ConfigError("engine=connect needs a Spark Connect URL: set LAKEHOUSE_SPARK_REMOTE=sc://host:15002")
    return settings


_current: Settings | None = None


def get_settings() -> Settings:
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def set_settings(settings: Settings | None) -> None:
    global _current
    _current = settings
