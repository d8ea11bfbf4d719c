"""Oversight of devices (国发〔2024〕5号): worked examples of the rule in
config/rules/oversight.yaml — one device far above three comparable ones is flagged, a
device with too few vehicles is not judged, nor one with too few comparable devices — the
counts read from a center, and the page, for administrators only."""

from datetime import date

import pytest
import yaml
from sqlalchemy.orm import Session
from web_factory import log_in, web_center

from center.oversight import (
    Counts,
    OversightError,
    judge,
    load_table,
    period_ending,
    read_counts,
)
from zhichao.resources import rules_dir


@pytest.fixture(scope="module")
def table():
    return load_table()


def by_id(judged):
    return {j.device_id: j for j in judged}


def test_every_number_of_the_rule_has_its_source_and_says_it_is_to_verify(table):
    rows = table.sources()
    assert [r["id"] for r in rows] == ["oversight.comparable", "oversight.statistics",
                                       "oversight.per-vehicles", "oversight.ratio",
                                       "oversight.min-vehicles", "oversight.min-peers",
                                       "oversight.period"]
    for r in rows:
        assert "国发〔2024〕5号" in r["source"] and r["verify"] and r["note"]
    assert (table.ratio.value, table.per_vehicles.value, table.min_vehicles.value,
            table.min_peers.value, table.period.value) == (3.0, 1000, 1000, 3, 90)
    assert table.statistics.value == ["cases", "fines_yuan"]


def test_one_device_far_above_three_comparable_ones_is_flagged(table):
    """A: 50 cases and 50 000 yuan per 5 000 vehicles = 10 cases and 10 000 yuan per 1 000;
    B, C, D: 2 cases and 2 000 yuan per 1 000 each. A's rates are 5 × the others' median
    (above 3 ×): flagged on both; each of B, C, D against the others (median 2, or 2 of
    {2, 2, 10}) is within. E weighed 100 vehicles, fewer than 1 000: its 400 cases per
    1 000 are shown, not judged, and E is no peer of the others."""
    counts = {"A": Counts(5000, 100, 50, 50_000.0), "B": Counts(4000, 20, 8, 8000.0),
              "C": Counts(3000, 15, 6, 6000.0), "D": Counts(2000, 10, 4, 4000.0),
              "E": Counts(100, 50, 40, 40_000.0)}
    judged = judge(counts, set(counts), table)
    assert judged[0].device_id == "A"  # flagged first
    got = by_id(judged)
    a = got["A"]
    assert a.judged and a.flagged
    assert a.rates["cases"] == pytest.approx(10.0)
    assert a.rates["fines_yuan"] == pytest.approx(10_000.0)
    assert a.medians == {"cases": pytest.approx(2.0), "fines_yuan": pytest.approx(2000.0)}
    assert len(a.reasons) == 2 and "5.0 × the others' median" in a.reasons[0]
    for d in "BCD":
        assert got[d].judged and not got[d].flagged and got[d].reasons == ()
        assert got[d].medians["cases"] == pytest.approx(2.0)
    e = got["E"]
    assert not e.judged and not e.flagged and e.rates["cases"] == pytest.approx(400.0)
    assert "100 vehicles weighed, fewer than 1000" in e.reasons[0]


def test_just_three_times_the_median_is_not_flagged_and_fines_alone_can_flag(table):
    counts = {"A": Counts(1000, 0, 6, 12_000.1), "B": Counts(1000, 0, 2, 4000.0),
              "C": Counts(1000, 0, 2, 4000.0), "D": Counts(1000, 0, 2, 4000.0)}
    a = by_id(judge(counts, set(counts), table))["A"]
    assert a.flagged and len(a.reasons) == 1 and a.reasons[0].startswith("fines_yuan")


def test_too_few_comparable_devices_an_inactive_one_and_a_median_of_zero(table):
    counts = {"A": Counts(5000, 0, 50, 0.0), "B": Counts(4000, 0, 8, 0.0),
              "C": Counts(3000, 0, 6, 0.0)}
    got = by_id(judge(counts, set(counts), table))
    assert not got["A"].judged and "2 comparable devices, fewer than 3" in got["A"].reasons[0]
    counts["D"] = Counts(2000, 0, 4, 0.0)
    counts["X"] = Counts(9000, 0, 900, 0.0)
    got = by_id(judge(counts, {"A", "B", "C", "D"}, table))
    assert got["X"].reasons == ("not active: not compared",) and not got["X"].flagged
    assert got["A"].flagged  # X, inactive, is no peer: the median stays 2 per 1 000
    assert "fines_yuan: the others' median is 0, no ratio taken" in got["A"].reasons
    silent = by_id(judge({}, {"Q"}, table))["Q"]  # active, nothing weighed
    assert silent.rates["cases"] is None and not silent.judged


def test_a_broken_table_is_refused_naming_the_key(tmp_path):
    data = yaml.safe_load((rules_dir() / "oversight.yaml").read_text(encoding="utf-8"))
    data["ratio"]["value"] = -1
    (tmp_path / "oversight.yaml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                             encoding="utf-8")
    with pytest.raises(OversightError, match="ratio"):
        load_table(tmp_path)
    with pytest.raises(OversightError, match="missing"):
        load_table(tmp_path / "none")


def test_the_period_is_cst_days_both_included(table):
    p = period_ending(date(2026, 6, 30), table)
    assert (p.first, p.last) == (date(2026, 4, 2), date(2026, 6, 30))
    assert p.start.isoformat() == "2026-04-01T16:00:00+00:00"
    assert p.end.isoformat() == "2026-06-30T16:00:00+00:00"


# --- on a center, and the page ---------------------------------------------------------------

@pytest.fixture
def web(center_db_url, tmp_path):
    w = web_center(center_db_url, tmp_path)
    yield w
    w.client.close()
    w.engine.dispose()


def test_counts_are_read_per_device_for_the_period(web, table):
    with Session(web.engine) as s:
        counts, active = read_counts(s, period_ending(date(2026, 6, 3), table))
        assert active == {"D1", "D2"}
        assert counts == {"D1": Counts(vehicles=3, captures_over=3, cases=3, fines_yuan=0.0)}
        before, _ = read_counts(s, period_ending(date(2026, 5, 31), table))
        assert before == {}


def test_the_page_is_for_administrators(web):
    assert web.client.get("/staff/oversight.json").status_code == 401
    r = web.client.get("/staff/oversight", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login")
    for officer in ("ZF001", "FS001"):
        log_in(web.client, officer)
        assert web.client.get("/staff/oversight.json").status_code == 403
        assert web.client.get("/staff/oversight").status_code == 403
    log_in(web.client, "ADM01")
    data = web.client.get("/staff/oversight.json?until=2026-06-03").json()
    assert data["period"] == {"first": "2026-03-06", "last": "2026-06-03"}
    assert data["flagged"] == 0 and data["per_vehicles"] == 1000
    rows = {d["device_id"]: d for d in data["devices"]}
    assert rows["D1"]["vehicles"] == 3 and rows["D1"]["cases"] == 3
    assert not rows["D1"]["judged"] and "fewer than 1000" in rows["D1"]["reasons"][0]
    assert rows["D2"]["vehicles"] == 0
    assert data["rule"][0]["id"] == "oversight.comparable"
    page = web.client.get("/staff/oversight?until=2026-06-03").text
    assert "oversight.ratio" in page and "国发〔2024〕5号" in page and "D1" in page
    assert web.client.get("/staff/oversight?until=2026-02-30").status_code == 422
    assert web.client.get("/staff/oversight?since=2026-01-01").status_code == 422
