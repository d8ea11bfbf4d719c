"""The calibration report: a page that names every plot it draws, shows both chains and
the classes, escapes what came from files, and leaves out plots it has no data for."""

import re
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from calibration.accuracy import assess
from calibration.chain import Certificate, Chain, ChannelGain, SpeedFactor, TemperatureCurve
from calibration.report import DriftPoint, PassPoint, chain_changes, write_report

pytestmark = pytest.mark.timeout(60)

HOSTILE = '<script>alert("x")</script>'
FIRST_ALARM_DAY = 23


def _chains() -> tuple[Chain, Chain]:
    before = Chain.from_factors("WIM-7", [1.0, 1.0, 1.0, 1.0], "2026.1")
    gain = ChannelGain(version="g2", fitted_from="20 runs of 2 trucks", factors=[1.03, 1.02,
                       1.04, 1.01], uncertainty_pct=0.4, approved_by="Wang",
                       approved_at=datetime(2026, 3, 1, 9, 30))
    speed = SpeedFactor(version="s2", fitted_from=f"runs {HOSTILE}", speeds_kmh=[40, 60, 80],
                        factors=[1.01, 1.0, 0.985], uncertainty_pct=0.3)
    curve = TemperatureCurve(version="t1", fitted_from="runs at 5–35 °C",
                             temperatures_c=[5.0, 35.0], factors=[0.99, 1.02])
    after = Chain(device_id="WIM-7", version="2026.2", stages=[gain, speed, curve],
                  certificate=Certificate(number="JJG907-0042", valid_from=date(2026, 3, 1),
                                          valid_to=date(2027, 2, 28), issuer="省计量院"))
    return before, after


def _runs(n: int = 20) -> list[PassPoint]:
    rng = np.random.default_rng(7)
    runs = []
    for i in range(n):
        axles = 2 if i % 2 else 6
        speed = 40.0 + 10.0 * (i % 5)
        runs.append(PassPoint(
            lane=1 + i % 2, truck="2-axle" if axles == 2 else "157 semi", speed_kmh=speed,
            temperature_c=None if i % 4 == 0 else 10.0 + i,
            gvw_error_before_pct=float(-3.0 + 0.05 * (speed - 60) + rng.normal(0, 2.5)),
            gvw_error_after_pct=float(rng.normal(0.1, 1.2)),
            axle_errors_before_pct=list(rng.normal(-3, 3, axles)),
            axle_errors_after_pct=list(rng.normal(0, 2, axles))))
    return runs


def _drift() -> list[DriftPoint]:
    points = []
    for lane in (1, 2):
        for tracking in (True, False):
            for day in range(1, 31):
                drift = 0.1 * day if not tracking else 0.1 * (day % 10)
                points.append(DriftPoint(
                    day=day, lane=lane, tracking=tracking, drift_pct=drift,
                    alarm=not tracking and lane == 1 and day >= FIRST_ALARM_DAY,
                    applied_pct=-1.0 if tracking and day % 10 == 9 else None,
                    class_value=5.0 if drift < 2.5 else 7.0))
    return points


def _accuracy(runs: list[PassPoint]) -> dict:
    return {"before": assess({"gvw": [r.gvw_error_before_pct for r in runs]}),
            "after": assess({"gvw": [r.gvw_error_after_pct for r in runs]})}


def _pngs(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        img.verify()
        return img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, str, tuple[Chain, Chain], dict]:
    out = tmp_path_factory.mktemp("report")
    before, after = _chains()
    runs = _runs()
    accuracy = _accuracy(runs)
    rng = np.random.default_rng(3)
    index = write_report(
        out, title="WIM-7 calibration", chain_before=before, chain_after=after, runs=runs,
        accuracy=accuracy,
        traffic_errors={"before": rng.normal(-3, 3, 500), "after": rng.normal(0, 1.5, 500),
                        "day 30, tracking off": rng.normal(3, 1.6, 500)},
        drift=_drift(), notes=[f"technician's note {HOSTILE}"],
        figures={"runs": 20, "class after": accuracy["after"].class_name})
    return index, index.read_text(encoding="utf-8"), (before, after), accuracy


def test_the_page_names_each_plot_and_each_is_a_png_beside_it(full):
    index, page, _, _ = full
    assert index.name == "index.html"
    names = _pngs(page)
    assert set(names) == {"speed.png", "temperature.png", "lane.png", "axles.png",
                          "traffic.png", "drift.png"}
    for name in names:
        assert "/" not in name and _is_png(index.parent / name), name


def test_the_page_is_self_contained(full):
    _, page, _, _ = full
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and "url(" not in page
    assert '<meta charset="utf-8">' in page


def test_both_chains_appear_with_version_digest_and_stages(full):
    _, page, (before, after), _ = full
    for chain in (before, after):
        assert chain.version in page
        assert chain.digest()[:12] in page and chain.digest() in page
    assert "JJG907-0042" in page and "2027-02-28" in page and "省计量院" in page
    for kind in ("channel_gain", "speed_factor", "temperature_curve"):
        assert kind in page
    assert "40.0, 60.0, 80.0 km/h" in page and "±0.40 %" in page
    assert "Wang, 2026-03-01 09:30" in page
    assert "not applied: proposed" in page


def test_text_from_files_is_escaped(full):
    _, page, _, _ = full
    assert HOSTILE not in page
    assert str(escape(HOSTILE)) in page
    assert "technician&#39;s note &lt;script&gt;" in page


def test_the_classes_and_their_explanation_appear(full):
    _, page, _, accuracy = full
    for key, result in accuracy.items():
        assert f"{key}: class {result.class_name}" in page
        for line in result.explain():
            assert str(escape(line)) in page
    why = f"{accuracy['before'].class_name} → {accuracy['after'].class_name}"
    assert why in page


def test_the_why_states_the_mean_and_spread_before_and_after(full):
    _, page, _, accuracy = full
    before, after = accuracy["before"].criteria[0], accuracy["after"].criteria[0]
    minus = lambda v: f"{v:+.2f} %".replace("-", "−")  # noqa: E731
    assert f"from {minus(before.mean)} to {minus(after.mean)}" in page
    assert f"from {before.std:.2f} % to {after.std:.2f} %" in page


def test_the_drift_summary_gives_the_first_alarm_and_the_corrections(full):
    _, page, _, _ = full
    assert f"first alarm: day {FIRST_ALARM_DAY}" in page
    summary = page[page.index('id="drift"'):]
    assert f"<td>day {FIRST_ALARM_DAY}</td>" in summary
    assert "day 9: −1.00 %; day 19: −1.00 %; day 29: −1.00 %" in summary


def test_the_key_figures_and_traffic_table(full):
    _, page, _, accuracy = full
    assert f"<th>class after</th><td>{accuracy['after'].class_name}</td>" in page
    assert "day 30, tracking off" in page


def test_without_drift_traffic_or_temperatures_those_plots_are_left_out(tmp_path):
    before, after = _chains()
    runs = [PassPoint(lane=1, truck="t", speed_kmh=40.0 + 5 * i, temperature_c=None,
                      gvw_error_before_pct=-2.0 + 0.3 * i, gvw_error_after_pct=0.1 * (-1) ** i,
                      axle_errors_before_pct=[-2.0, -1.0], axle_errors_after_pct=[0.1, -0.1])
            for i in range(6)]
    (tmp_path / "drift.png").write_bytes(b"an old plot")  # from an earlier report
    index = write_report(tmp_path, title="no drift", chain_before=before, chain_after=after,
                         runs=runs, accuracy=_accuracy(runs))
    page = index.read_text(encoding="utf-8")
    assert set(_pngs(page)) == {"speed.png", "lane.png", "axles.png"}
    assert not (tmp_path / "drift.png").exists()
    assert not (tmp_path / "temperature.png").exists()
    assert 'id="drift"' not in page and 'id="traffic"' not in page
    assert "6 run(s) without a pavement temperature" in page


def test_chain_changes_names_added_and_replaced_stages():
    before, after = _chains()
    lines = chain_changes(before, after)
    assert lines[0].startswith("The chain goes from version 2026.1")
    assert any(line.startswith("Replaced channel_gain 2026.1 by g2") for line in lines)
    assert any(line.startswith("Added speed_factor s2") for line in lines)
    assert chain_changes(before, before) == ["The chain is unchanged."]


def test_a_report_without_data_draws_nothing_and_odd_series_names_do_not_break_it(tmp_path):
    chain = Chain.identity("WIM-7")
    bare = write_report(tmp_path / "bare", title="nothing yet", chain_before=chain,
                        chain_after=chain, runs=[], accuracy={})
    assert [p.name for p in bare.parent.iterdir()] == ["index.html"]
    assert "The chain is unchanged." in bare.read_text(encoding="utf-8")
    odd = write_report(tmp_path / "odd", title="odd", chain_before=chain, chain_after=chain,
                       runs=[], accuracy={},
                       traffic_errors={"cost $5$ <b>": np.array([1.0, 2.0, np.nan]),
                                       "no finite value": np.array([np.nan])})
    page = odd.read_text(encoding="utf-8")
    assert _pngs(page) == ["traffic.png"] and _is_png(odd.parent / "traffic.png")
    assert "cost $5$ &lt;b&gt;" in page and "no finite value" not in page


def test_an_after_assessment_named_more_fully_is_still_compared(tmp_path):
    before, after = _chains()
    runs = _runs(10)
    accuracy = _accuracy(runs)
    named = {"before": accuracy["before"], "after (same runs)": accuracy["after"]}
    page = write_report(tmp_path, title="named", chain_before=before, chain_after=after,
                        runs=runs, accuracy=named).read_text(encoding="utf-8")
    assert f"{accuracy['before'].class_name} → {accuracy['after'].class_name}" in page
    assert "after (same runs): class" in page
    assert "Dashed: the gross-weight tolerance ±δ of the class reached after." in page


def test_within_one_class_the_why_compares_the_tolerance_met(tmp_path):
    """A factory chain already in A(5): the report does not call the calibration's
    smaller d_min "the same", and names a larger one as such."""
    rng = np.random.default_rng(3)
    wide, narrow = rng.normal(0.6, 1.9, 400), rng.normal(0.1, 1.6, 400)
    before_chain, after_chain = _chains()
    pages = {}
    for name, (b, a) in {"tighter": (wide, narrow), "looser": (narrow, wide)}.items():
        accuracy = {"before": assess({"gvw": b}, "r2", "I"), "after": assess({"gvw": a}, "r2", "I")}
        assert accuracy["before"].class_name == accuracy["after"].class_name == "A(5)"
        page = write_report(tmp_path / name, title=name, chain_before=before_chain,
                            chain_after=after_chain, runs=_runs(10),
                            accuracy=accuracy).read_text(encoding="utf-8")
        d = [accuracy[k].criteria[0].d_min for k in ("before", "after")]
        pages[name] = page
        assert f"d_min {d[0]:.2f} % → {d[1]:.2f} %" in page, name
    assert "the same class, met with a smaller tolerance" in pages["tighter"]
    assert "the same class, met with a larger tolerance" in pages["looser"]
