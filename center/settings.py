"""Settings of a center: one YAML file, validated before anything starts.

Errors name the file, the option and the value; unknown options are errors. Where a
number comes from practice rather than a statute (the notice lead time, the trip window),
it is a setting here with the rules digest's reason beside it in the example file.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from zhichao.settings import load_model


class ReceiverSettings(BaseModel):
    """Where the center listens for roadside units, and with which CURVE key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: list[str] = Field(default_factory=lambda: ["tcp://127.0.0.1:5760"],
                              min_length=1, description="ZeroMQ endpoints the ROUTER binds")
    server_secret_key: Path = Field(Path("keys/center.key_secret"),
                                    description="the center's CURVE secret key file "
                                    "(zhichao keys new --curve-only)")
    zap_domain: str = Field("zhichao", min_length=1,
                            description="ZAP domain; the edges must set the same")
    batch_max: int = Field(500, ge=1, description="packets committed in one transaction")
    batch_wait_ms: int = Field(20, ge=0, description="how long a batch waits to fill")
    heartbeat_s: float = Field(5.0, gt=0)


class LawSettings(BaseModel):
    """How captures become cases: legality, grading and grouping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules_folder: Path | None = Field(None, description="the center's own rule tables; "
                                      "default: the tables shipped with zhichao")
    vendor: str = "generic"
    benchmark: str = Field("national", description="discretion benchmark table")
    tolerance: str = Field("none", description="tolerance policy of tolerance.yaml")
    notice_lead_days: int = Field(15, ge=0, description="days a device's location must be "
                                  "published before its captures are evidence (Zhejiang "
                                  "公路条例 Art. 38 gives 15; other provinces differ)")
    trip_window_h: float = Field(6.0, gt=0, description="captures of one plate this close "
                                 "together are one continuous trip, one case")
    repeat_window_days: int = Field(365, ge=1, description="look-back for earlier captures "
                                    "of the vehicle (公路安全保护条例 Art. 66: 1 year)")
    repeat_more_than: int = Field(3, ge=0, description="more acts than this within the "
                                  "look-back is the repeat of 公路安全保护条例 Art. 66")
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
    min_plate_confidence: float = Field(0.0, ge=0, le=1, description="a plate read less "
                                        "surely than this is not readable evidence")
    report_working_days: int = Field(7, ge=0, description="a closed case goes to the "
                                     "national system within this many working days "
                                     "(Order 62 Art. 44, per rules-cn.md §5)")
    process_interval_s: float = Field(2.0, gt=0, description="how often `center run` "
                                      "looks for stored packets without a capture")


class CenterSettings(BaseModel):
    """Everything a center needs to know about itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str = Field("center.db", description="SQLAlchemy URL, or a SQLite file path")
    images_dir: Path = Field(Path("evidence-images"),
                             description="evidence images, one file per SHA-256")
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    law: LawSettings = Field(default_factory=LawSettings)


def load_center_settings(path: Path) -> CenterSettings:
    """Read and validate a center settings file; paths in it are relative to the file."""
    settings = load_model(path, CenterSettings)
    base = Path(path).resolve().parent

    def here(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    receiver = settings.receiver.model_copy(
        update={"server_secret_key": here(settings.receiver.server_secret_key)})
    database = settings.database
    if "://" not in database:
        database = str(here(Path(database)))
    law = settings.law
    if law.rules_folder is not None:
        law = law.model_copy(update={"rules_folder": here(law.rules_folder)})
    return settings.model_copy(update={"images_dir": here(settings.images_dir),
                                       "receiver": receiver, "database": database,
                                       "law": law})
