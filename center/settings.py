"""Settings of a center: one YAML file, validated before anything starts.

Errors name the file, the option and the value; unknown options are errors. A number a
statute sets (the notice lead time, the Art. 66 repeat count and its look-back, the Art. 44
report deadline) is not a setting: it is a row of the rule tables (``enforcement.yaml`` of
``law.rules_folder``, default the shipped tables). What comes from practice or policy (the
trip window, flags, trusted clocks, the plate floors, the bounds of the images the center
reads plates from) is a setting here.
"""

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from center.notify import NotifySettings
from zhichao.metrics import MetricsAddress
from zhichao.settings import BindEndpoint, count, load_model, number

KEEPALIVE_IDLE_MAX_S = 32767
"""The longest TCP keepalive idle time Linux takes (``MAX_TCP_KEEPIDLE``): a longer
heartbeat cannot be set on the socket."""
DATABASES = "a SQLite file path (center.db), sqlite:///PATH or postgresql://USER@HOST/DB"
"""What ``database`` may be: the two databases the center's migrations are written for."""


class KeyRotation(BaseModel):
    """The center's new CURVE key during a rotation's overlap (``zhichao center keys
    rotate`` writes it and prints this section): bound on addresses of its own, beside the
    old key's, until the end of ``old_key_until``; then the old key's socket is closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_secret_key: Path = Field(description="the new CURVE secret key file")
    listen: list[BindEndpoint] = Field(min_length=1, description="endpoints the new key's "
                                       "ROUTER binds; units moved to the new key connect "
                                       "here, with the new public key")
    old_key_until: date = Field(description="the last day (China time) the old key "
                                "(receiver.server_secret_key on receiver.listen) is served")


class ReceiverSettings(BaseModel):
    """Where the center listens for roadside units, and with which CURVE key."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    listen: list[BindEndpoint] = Field(default_factory=lambda: ["tcp://127.0.0.1:5760"],
                                       min_length=1, description="ZeroMQ endpoints the "
                                       "ROUTER binds (tcp://HOST:PORT, ipc://PATH)")
    server_secret_key: Path = Field(Path("keys/center.key_secret"),
                                    description="the center's CURVE secret key file "
                                    "(zhichao keys new --curve-only)")
    zap_domain: str = Field("zhichao", min_length=1,
                            description="ZAP domain; the edges must set the same")
    batch_max: count(10_000, "one transaction, whose every packet waits for its commit "
                     "to be acknowledged") = Field(
        500, description="packets committed in one transaction")
    batch_wait_ms: count(60_000, "a minute; a packet's ack waits this long, and an edge "
                         "resends what is not acknowledged in resend_max_s", at_least=0,
                         unit=" ms") = Field(20, description="how long a batch waits to fill")
    heartbeat_s: number(KEEPALIVE_IDLE_MAX_S, "the longest TCP keepalive idle time the "
                        "kernel takes", unit=" s") = Field(
        5.0, description="TCP keepalive: silence before probing a connection; three "
        "unanswered probes drop it")
    max_image_bytes: int = Field(
        10_000_000, ge=1, description="a packet with an image larger than this is refused "
        "('image_too_large'): a 4000 × 3000 camera's JPEG has 2-6 MB, and the center reads "
        "no plate from a file above law.plate_read_max_bytes (the same 10 MB)")
    max_images: int = Field(
        16, ge=0, description="a packet with more images than this is refused "
        "('too_many_images'): a pass has one per camera role (front, side, rear, plate, "
        "overview), a few more with several cameras a role")
    max_packet_bytes: int = Field(
        50_000_000, ge=1, description="a packet larger than this, images included, is "
        "refused ('packet_too_large'), never verified or stored: one sender's packets "
        "cannot fill the disk or the store's batches however large they are")
    rotation: KeyRotation | None = Field(None, description="a second CURVE key during a "
                                         "rotation of the center's key (docs/install.md)")

    @model_validator(mode="after")
    def _rotation_apart(self) -> "ReceiverSettings":
        """The new key on addresses and in a file of its own: one address serves one key."""
        if self.rotation is None:
            return self
        shared = sorted(set(self.listen) & set(self.rotation.listen))
        if shared:
            raise ValueError(f"rotation.listen must differ from listen: {', '.join(shared)} "
                             "is in both (one address serves one key)")
        if self.rotation.server_secret_key == self.server_secret_key:
            raise ValueError(f"rotation.server_secret_key is the old key "
                             f"({self.server_secret_key}): give the new key's file")
        return self


MOVED_TO_RULES = {"notice_lead_days": "notice_lead", "repeat_window_days": "repeat_window",
                  "repeat_more_than": "repeat_more_than",
                  "report_working_days": "report_within"}
"""Former ``law`` options that statutes set: now rows of the rule table enforcement.yaml."""


class LawSettings(BaseModel):
    """How captures become cases: legality, grading and grouping."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rules_folder: Path | None = Field(None, description="the center's own rule tables, "
                                      "enforcement.yaml among them (notice lead time, "
                                      "Art. 66 repeat, Art. 44 report deadline); default: "
                                      "the tables shipped with zhichao")
    vendor: str = "generic"
    benchmark: str = Field("national", description="discretion benchmark table")
    tolerance: str = Field("none", description="tolerance policy of tolerance.yaml")
    trip_window_h: number(72, "three days; captures further apart are not one continuous "
                          "trip", unit=" h") = Field(
        6.0, description="captures of one plate this close together are one continuous "
        "trip, one case")
    abnormal_driving_flags: tuple[str, ...] = Field(
        ("speed_change", "straddling", "weaving", "off_speed"),
        description="quality flags of abnormal driving: such a pass is weighed outside the "
        "conditions of the device's accuracy class (JJG 907) and is not evidence")
    faulty_measurement_flags: tuple[str, ...] = Field(
        ("missing_axle", "ghost_axle", "merged", "saturated", "unknown_code", "data_gap"),
        description="quality flags of an incomplete or doubtful measurement: not evidence "
        "(行政处罚法 Art. 41: records true, clear, complete and accurate)")
    trusted_clocks: tuple[str, ...] = Field(
        ("synced", "holdover"), description="clock statuses whose capture time is trusted; "
        "a pass timed by any other clock is not evidence")
    min_plate_confidence: float = Field(
        0.57, ge=0, le=1, description="a plate read less surely than this (the product of "
        "its characters' probabilities) is not readable evidence. Chosen on the reader's "
        "readings of the 229 shared plate crops whose SHA-256 starts 0-b: the lowest floor "
        "refusing every wrong reading there (one, at 0.562). Held out (76 crops, c-f): 73 "
        "of 74 right readings kept, and both wrong readings let through (0.750, 0.987): a "
        "floor does not catch a sure misreading; benchmarks/plate_floor.py")
    min_province_confidence: float = Field(
        0.005, ge=0, le=1, description="a plate whose province character was read less "
        "surely than this is not readable evidence (a packet without the figure is not "
        "checked). No reading of the 229 choosing crops had a wrong province, so the data "
        "give no floor above the reader's own (0.005); the crops are nearly all 皖, so "
        "province errors are barely tested. Held out: 74 of 74 right readings pass it")
    plate_read_max_bytes: int = Field(10_000_000, ge=1, description="an image file larger "
                                      "than this is not read for a plate at the center")
    plate_read_max_pixels: int = Field(12_000_000, ge=1, description="nor an image with "
                                       "more pixels than this (width × height, from its "
                                       "header, before decoding): a 4000 × 3000 camera")
    process_interval_s: number(3600, "an hour; with --process-only stored packets wait "
                               "this long to become captures and cases", unit=" s") = Field(
        2.0, description="the longest `center run` waits between looks for stored packets "
        "without a capture; its receiver wakes it sooner, after each batch it commits (with "
        "--process-only, the interval is the only clock)")

    @model_validator(mode="before")
    @classmethod
    def _not_moved(cls, data: Any) -> Any:
        """A former option the law sets gets told where it went, not "a typo?"."""
        if isinstance(data, dict):
            for old, row in MOVED_TO_RULES.items():
                if old in data:
                    raise ValueError(
                        f"'{old}' is no longer a setting: the law sets it, as '{row}' of the "
                        "rule table enforcement.yaml; to change it, copy the rules folder "
                        "and point law.rules_folder at the copy")
        return data


class AuthoritySettings(BaseModel):
    """The enforcing authority as its documents name it (行政处罚法 Art. 59: the authority,
    where to pay, where to appeal)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("某某市交通运输综合行政执法支队", min_length=1, max_length=64,
                      description="the authority that decides (and seals) the documents")
    address: str = Field("（执法机关地址）", min_length=1, max_length=128)
    number_prefix: str = Field("交罚", min_length=1, max_length=16,
                               description="文书编号 prefix: PREFIX〔YEAR〕CASE号")
    payment: str = Field("（代收罚款的银行）", min_length=1, max_length=128,
                         description="where a fine is paid: the bank or payment system that "
                         "collects it (行政处罚法 Art. 67: the authority does not take the money)")
    payment_account: str = Field("（户名、账号或缴款码）", min_length=1, max_length=128,
                                 description="the account words printed on a decision")
    review_body: str = Field("某某市人民政府", min_length=1, max_length=64,
                             description="where an administrative review (行政复议) is asked")
    court: str = Field("某某区人民法院", min_length=1, max_length=64,
                       description="where an administrative suit (行政诉讼) is brought")
    website: str | None = Field(None, max_length=200, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
                                description="the address of the public pages as a party "
                                "types it (printed on the notice with the look-up path "
                                "/case); none: the notice names the path only")


class ProcedureSettings(BaseModel):
    """How the center runs the procedure after review: which procedure table, who it is,
    how it reaches parties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(None, max_length=32, description="procedure table of the "
                              "rules folder (national, zhejiang, ...); default: the "
                              "benchmark's name (law.benchmark)")
    authority: AuthoritySettings = Field(default_factory=AuthoritySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)


class WebSettings(BaseModel):
    """The center's web pages (``zhichao center web``): where they listen, how long a
    staff session lasts, the limits of what the public and owners may send."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    host: str = Field("127.0.0.1", min_length=1, max_length=253,
                      description="address to listen on (0.0.0.0: every interface)")
    port: count(65535, "the highest TCP port") = Field(8780, description="TCP port")
    serve_with_run: bool = Field(False, description="`center run` serves the pages too")
    tls_cert: Path | None = Field(None, description="certificate file: serve HTTPS (cookies "
                                  "then Secure)")
    tls_key: Path | None = Field(None, description="the certificate's private key file")
    session_hours: number(168, "a week", unit=" h") = Field(
        10.0, description="a staff session ends this long after log-in")
    tile_url: str | None = Field(None, max_length=500, pattern=r"^https?://",
                                 description="map tiles ({z}/{x}/{y}); none: the map draws "
                                 "the devices on a plain outline, offline")
    owner_attempts_per_hour: count(10_000, "per address") = Field(
        20, description="look-ups and submissions an address may make in an hour")
    max_attachment_bytes: count(50_000_000, "50 MB") = Field(
        5_000_000, description="one attachment to an owner's statement at most")
    max_attachments: count(20, "per statement") = Field(5, description="attachments a "
                                                        "statement may carry")
    uploads_dir: Path = Field(Path("uploads"), description="owners' attachments, outside "
                              "the web root, under generated names")


class CenterSettings(BaseModel):
    """Everything a center needs to know about itself."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    database: str = Field("center.db", min_length=1,
                          description="a SQLite file path, or a sqlite:// or postgresql:// "
                          "SQLAlchemy URL")
    images_dir: Path = Field(Path("evidence-images"),
                             description="evidence images, one file per SHA-256")
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    law: LawSettings = Field(default_factory=LawSettings)
    procedure: ProcedureSettings = Field(default_factory=ProcedureSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    metrics_address: MetricsAddress | None = Field(
        None, description="HOST:PORT to serve Prometheus metrics on (/metrics; "
        "docs/metrics.md), e.g. 127.0.0.1:9465; None: no metrics page")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths of the settings are taken from: the settings file's
        (the working folder for the defaults)."""
        return self._base_dir

    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """SQLite or PostgreSQL (with psycopg, the driver zhichao installs), nothing else;
        a URL's password is never repeated in the message."""
        if "://" not in value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"must be {DATABASES} (got {value!r}, not a URL)") from None
        backend, _, driver = url.drivername.partition("+")
        if (backend, driver) in {("sqlite", ""), ("sqlite", "pysqlite"), ("postgresql", ""),
                                 ("postgresql", "psycopg")}:
            return value
        raise ValueError(f"must be {DATABASES} (driver psycopg); "
                         f"{url.drivername} is not supported "
                         f"(got {url.render_as_string(hide_password=True)!r})")


def load_center_settings(path: Path) -> CenterSettings:
    """Read and validate a center settings file; paths in it are relative to the file."""
    settings = load_model(path, CenterSettings)
    base = Path(path).resolve().parent

    def here(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    rotation = settings.receiver.rotation
    if rotation is not None:
        rotation = rotation.model_copy(
            update={"server_secret_key": here(rotation.server_secret_key)})
    receiver = settings.receiver.model_copy(
        update={"server_secret_key": here(settings.receiver.server_secret_key),
                "rotation": rotation})
    database = settings.database
    if "://" not in database:
        database = str(here(Path(database)))
    law = settings.law
    if law.rules_folder is not None:
        law = law.model_copy(update={"rules_folder": here(law.rules_folder)})
    web = settings.web.model_copy(update={
        "uploads_dir": here(settings.web.uploads_dir),
        "tls_cert": here(settings.web.tls_cert) if settings.web.tls_cert else None,
        "tls_key": here(settings.web.tls_key) if settings.web.tls_key else None})
    loaded = settings.model_copy(update={"images_dir": here(settings.images_dir),
                                         "receiver": receiver, "database": database,
                                         "law": law, "web": web})
    loaded._base_dir = base
    return loaded
