"""The diffusion benchmark's verdict lines (benchmarks/diffusion_bench.py): on the two-factor set the SalUn and
AdvUnlearn directions read IRA and CRA (there is no RA there), on digits RA; each verdict can come out either way."""
from __future__ import annotations

BENCHMARK = "diffusion_bench"  # the `bench` fixture (tests/conftest.py) imports benchmarks/diffusion_bench.py


def _by(rows: dict[str, list[dict]]) -> dict[str, dict[int, dict]]:
    return {m: {s: {"metrics": v} for s, v in enumerate(vals)} for m, vals in rows.items()}


def test_canvas_checks_read_ira_and_cra(bench):
    base = {"UA": 99.0, "IRA": 90.0, "CRA": 45.0, "ASR_pre": 1.0, "ASR_post": 5.0}
    rows = {"salun_gen": [{**base, "IRA": 95.0 + s, "CRA": 50.0 + s} for s in range(3)],  # SalUn keeps more
            "salun_gen (no mask)": [{**base, "IRA": 85.0 + s, "CRA": 40.0 + s} for s in range(3)],
            "esd": [{**base, "ASR_post": 60.0 + s} for s in range(3)],
            "advunlearn": [{**base, "ASR_post": 20.0 + 2 * s} for s in range(3)]}
    lines = bench.checks(_by(rows), {"UA": 0.0})
    salun = next(ln for ln in lines if ln.startswith("- SalUn"))
    assert "IRA of SalUn minus no-mask: above" in salun and "CRA of SalUn minus no-mask: above" in salun
    assert "RA of SalUn" not in salun.replace("IRA of", "").replace("CRA of", "") and "not run" not in salun
    adv = next(ln for ln in lines if ln.startswith("- AdvUnlearn"))
    assert "below" in adv and "**reproduced**" in adv and "IRA difference +0.0, CRA difference +0.0" in adv
    rows["advunlearn"] = [{**base, "ASR_post": 70.0 + s} for s in range(3)]  # now worse than ESD
    adv = next(ln for ln in bench.checks(_by(rows), {"UA": 0.0}) if ln.startswith("- AdvUnlearn"))
    assert "above" in adv and "**not reproduced**" in adv
    assert any(ln.startswith("- No method wins all UnlearnCanvas metrics") for ln in lines)


def test_digits_checks_read_ra(bench):
    base = {"UA": 97.0, "RA": 60.0, "ASR_pre": 5.0, "ASR_post": 10.0}
    rows = {"salun_gen": [{**base, "RA": 60.0 + s} for s in range(3)],
            "salun_gen (no mask)": [{**base, "RA": 60.0 - s} for s in range(3)]}
    lines = bench.checks(_by(rows), {"UA": 2.0})
    assert len(lines) == 1 and "RA of SalUn minus no-mask: tie" in lines[0] and "IRA" not in lines[0]
