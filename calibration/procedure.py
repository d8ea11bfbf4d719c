"""The technician's procedure, from files: reference trucks and passes in, a proposed chain
and a report out; the chain applied only when a named person approves it.

``zhichao calibrate run`` and ``zhichao calibrate apply`` call these; so could a web page.

- The trucks file (YAML) lists each reference truck as the static scale weighed it::

      trucks:
        - name: truck A
          axle_loads_kg: [6150, 10820]
          spacings_m: [4.6]        # optional: helps matching passes in traffic
          axle_code: "12"          # optional
          scale: XK3190 at 收费站 3 # optional, for the record

- The passes file is what the unit weighed during the runs: one JSON object a line, as
  ``zhichao edge run --json`` prints them (lane, speed_mps, axle_loads_kg, row_loads_kg,
  temperature_c, spacings_m, axle_code, flags). A bad line is named and left out.
"""

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calibration.accuracy import AccuracyResult, assess
from calibration.chain import Certificate, Chain, load_chain, save_chain
from calibration.reference import (
    Fit,
    ReferenceTruck,
    Run,
    WeighedPass,
    approve,
    fit_chain,
    match_runs,
)
from drivers.strips import StripArray
from zhichao.errors import ConfigError, ZhichaoError

MAX_FILE_BYTES = 50_000_000
MAX_PASSES = 100_000
MAX_LINE_CHARS = 100_000
PROPOSED = "proposed-chain.json"


class _Truck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=64)
    axle_loads_kg: list[float] = Field(min_length=2, max_length=8)
    spacings_m: list[float] | None = Field(None, max_length=7)
    axle_code: str | None = Field(None, max_length=8)
    scale: str = Field("", max_length=200)

    def truck(self, where: str) -> ReferenceTruck:
        if any(not 100 <= w <= 30_000 for w in self.axle_loads_kg):
            raise ConfigError(f"{where}: axle_loads_kg {self.axle_loads_kg}: each axle "
                              "must weigh 100 to 30 000 kg")
        if self.spacings_m is not None and (
                len(self.spacings_m) != len(self.axle_loads_kg) - 1
                or any(not 0.5 <= s <= 20 for s in self.spacings_m)):
            raise ConfigError(f"{where}: spacings_m {self.spacings_m}: one spacing of 0.5 "
                              f"to 20 m between each two of the {len(self.axle_loads_kg)} axles")
        return ReferenceTruck(self.name, tuple(self.axle_loads_kg),
                              None if self.spacings_m is None else tuple(self.spacings_m),
                              self.axle_code)


class _TruckFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trucks: list[_Truck] = Field(min_length=1, max_length=10)


def _read(path: Path, what: str) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from exc
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{what} {path}: {size} bytes, at most {MAX_FILE_BYTES}")
    return path.read_text(encoding="utf-8", errors="replace")


def load_trucks(path: Path) -> list[ReferenceTruck]:
    """The reference trucks of a trucks file; errors name the truck and the field."""
    try:
        data = yaml.safe_load(_read(path, "trucks file"))
        parsed = _TruckFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"trucks file {path}: not YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ConfigError(f"trucks file {path}: {where}: {first['msg']}") from exc
    names = [t.name for t in parsed.trucks]
    if len(set(names)) != len(names):
        raise ConfigError(f"trucks file {path}: two trucks share a name: {names}")
    return [t.truck(f"trucks file {path}: trucks.{i} ({t.name})")
            for i, t in enumerate(parsed.trucks)]


def read_passes(path: Path, refused: list[str]) -> list[WeighedPass]:
    """The passes of a JSON-lines file; each bad line named in ``refused`` and left out."""
    passes = []
    for n, line in enumerate(_read(path, "passes file").splitlines(), 1):
        if not line.strip():
            continue
        if len(passes) >= MAX_PASSES:
            refused.append(f"line {n}: more than {MAX_PASSES} passes; the rest left out")
            break
        if len(line) > MAX_LINE_CHARS:
            refused.append(f"line {n}: {len(line)} characters, at most {MAX_LINE_CHARS}")
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "summary" in data:
                continue  # the run's last line: its counts, not a pass
            p = WeighedPass.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            refused.append(f"line {n}: {type(exc).__name__}: {exc}"[:300])
            continue
        if not (0 <= p.lane < 16 and 0 < p.speed_kmh < 250 and 1 <= p.n_axles <= 12
                and np.all(np.isfinite(p.axle_loads_kg))):
            refused.append(f"line {n}: lane, speed or axle loads out of range")
            continue
        passes.append(p)
    return passes


@dataclass(frozen=True)
class CalibrationRun:
    """What ``zhichao calibrate run`` did."""

    runs: list[Run]
    refused: list[str]
    fit: Fit
    before: AccuracyResult
    after: AccuracyResult
    chain_path: Path
    report_path: Path | None


def run_calibration(trucks: list[ReferenceTruck], passes: list[WeighedPass], before: Chain,
                    site: StripArray, out_dir: Path, *, version: str, plan: str = "r2",
                    env: str = "I", refused: list[str] | None = None,
                    progress: Callable[[str], None] | None = None,
                    report: bool = True) -> CalibrationRun:
    """Match, fit, assess and write the proposed chain and the report (nothing applied).

    The "after" figures are of the same runs the fit was made on: they show the fit, not
    the unit's class; fresh runs (``zhichao calibrate accuracy``) show that.
    """
    say = progress or (lambda _m: None)
    refused = list(refused or [])
    runs, set_aside = match_runs(trucks, passes)
    refused += [f"pass at {p.t_s:.1f} s, lane {p.lane + 1}: {why}" for p, why in set_aside]
    say(f"{len(runs)} runs matched to {len(trucks)} trucks, {len(set_aside)} passes set aside")
    if len(runs) < 4:
        raise ConfigError(f"only {len(runs)} passes match a reference truck; at least 4 "
                          f"are needed ({len(set_aside)} set aside: "
                          + "; ".join(why for _, why in set_aside[:3]) + ")")
    fit = fit_chain(runs, before, site, version=version, progress=say,
                    fitted_from=f"{len(runs)} runs of {len(trucks)} reference trucks")
    before_err = np.array([r.gvw_error_pct for r in runs])
    after_err = np.array([r.errors_with(fit.correction(r.weighed))[0] for r in runs])
    result_before = assess({"gvw": before_err}, plan, env)
    result_after = assess({"gvw": after_err}, plan, env)
    out_dir.mkdir(parents=True, exist_ok=True)
    chain_path = out_dir / PROPOSED
    save_chain(fit.chain, chain_path)
    report_path = None
    if report:
        say("writing the report")
        report_path = _report(out_dir, runs, fit, before, result_before=result_before,
                              result_after=result_after)
    return CalibrationRun(runs, refused, fit, result_before, result_after, chain_path,
                          report_path)


def _report(out_dir: Path, runs: list[Run], fit: Fit, before: Chain, *,
            result_before: AccuracyResult, result_after: AccuracyResult) -> Path:
    """The HTML report of a calibration from reference trucks."""
    # matplotlib is imported only when a report is written, not with every command
    from calibration.report import PassPoint, write_report  # noqa: PLC0415

    points = [PassPoint.of_run(r, fit.correction(r.weighed)) for r in runs]
    notes = [*fit.notes, "The 'after' figures are of the runs the chain was fitted on; "
             "drive fresh runs and assess them (zhichao calibrate accuracy) for the class."]
    return write_report(out_dir, title=f"Calibration {fit.chain.version} of {before.device_id}",
                        chain_before=before, chain_after=fit.chain, runs=points,
                        accuracy={"before": result_before, "after (same runs)": result_after},
                        notes=notes, figures={"runs": len(runs), **{
                            f"uncertainty {k} (%)": round(v, 3)
                            for k, v in fit.uncertainty_pct.items()}})


def apply_chain(proposed: Path, target: Path, *, device_id: str, by: str,
                certificate: Certificate | None = None, now: datetime | None = None) -> Chain:
    """Approve a proposed chain in ``by``'s name and make it the unit's (``target``); the
    chain it replaces is kept beside it as ``<target>.<version>.json``."""
    if not by.strip():
        raise ConfigError("a chain is applied in a person's name: give --by")
    chain = load_chain(proposed)
    if chain.device_id != device_id:
        raise ConfigError(f"{proposed} is a chain for unit {chain.device_id!r}, not "
                          f"{device_id!r}")
    chain = approve(chain, by, now)
    chain = chain.model_copy(update={"certificate": certificate or chain.certificate})
    if target.exists():
        old = load_chain(target)
        target.replace(target.with_name(f"{target.name}.{_safe(old.version)}.json"))
    save_chain(chain, target)
    return chain


def certificate_from(number: str | None, valid_from: date | None, valid_to: date | None
                     ) -> Certificate | None:
    """A certificate from the three options, all or none; ConfigError otherwise."""
    given = [x is not None for x in (number, valid_from, valid_to)]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError("a verification certificate needs --certificate, --valid-from "
                          "and --valid-to together")
    try:
        return Certificate(number=number, valid_from=valid_from, valid_to=valid_to)
    except ValidationError as exc:
        raise ConfigError(f"certificate: {exc.errors()[0]['msg']}") from exc


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:64]


class ScaleError(ZhichaoError):
    """No stable weight came from the scale indicator in time."""


def weigh_axles(readings: Callable[[float], Iterable[dict]], axles: int, *,
                prompt: Callable[[int], None], timeout_s: float = 120.0,
                min_kg: float = 100.0, clock: Callable[[], float] | None = None
                ) -> list[float]:
    """Each axle's weight from a static scale indicator (``readings(timeout_s)`` gives the
    driver's readings in order: dicts with ``weight_kg`` and ``stable``).

    ``prompt(k)`` asks for axle ``k`` (0-based) to be driven onto the scale alone and
    returns once it stands there (the technician presses Enter). Only a stable weight is a
    reference (OIML R76: the weight stays within a band of divisions for a while,
    :class:`drivers.scale.Stability`), and from the second axle on only one after the
    scale has moved since the last weight was taken: the display still showing the axle
    before is not the next axle, however alike the two weigh.
    """
    now = clock or time.monotonic
    weights: list[float] = []
    moved = True
    for k in range(axles):
        prompt(k)
        deadline = now() + timeout_s
        taken = None
        while taken is None:
            left = deadline - now()
            if left <= 0:
                raise ScaleError(f"axle {k + 1}: no stable weight above {min_kg:.0f} kg "
                                 f"from the scale in {timeout_s:.0f} s — is the axle on "
                                 "the scale alone, and the indicator sending?")
            for r in readings(min(0.2, left)):
                if r.get("kind") != "scale":
                    continue
                if not r.get("stable"):
                    moved = True
                elif moved and not r.get("out_of_range") and float(r["weight_kg"]) >= min_kg:
                    taken = float(r["weight_kg"])
                    break
        weights.append(taken)
        moved = False
    return weights


def save_truck(path: Path, name: str, axle_loads_kg: list[float], *, scale: str = "",
               spacings_m: list[float] | None = None) -> None:
    """Put a truck into a trucks file (replacing one of the same name), keeping the rest."""
    trucks = []
    if path.exists():
        trucks = [t.model_dump(exclude_none=True) for t in _TruckFile.model_validate(
            yaml.safe_load(_read(path, "trucks file"))).trucks if t.name != name]
    entry = _Truck(name=name, axle_loads_kg=axle_loads_kg, spacings_m=spacings_m, scale=scale)
    entry.truck(f"truck {name}")  # the same bounds as when the file is read
    trucks.append(entry.model_dump(exclude_none=True))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump({"trucks": trucks}, allow_unicode=True, sort_keys=False),
                   encoding="utf-8")
    tmp.replace(path)
