"""Bjøntegaard deltas against hand-computable cases."""

import math

import numpy as np
import pytest

from vsr_plugin.measure.bdrate import METHODS, Curve, bd_quality, bd_rate, compare, crossovers

RATES = np.array([100.0, 200.0, 400.0, 800.0])
PSNR = np.array([30.0, 33.0, 36.0, 39.0])


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    a = Curve.of(RATES, PSNR)
    d = bd_rate(a, a, method)
    assert d.value == pytest.approx(0.0, abs=1e-9) and d.reliable and d.overlap == 1.0
    assert bd_quality(a, a, method).value == pytest.approx(0.0, abs=1e-9)
    assert crossovers(a, a) == []


@pytest.mark.parametrize("method", METHODS)
def test_half_the_bitrate_is_minus_fifty_percent(method):
    a, b = Curve.of(RATES, PSNR), Curve.of(RATES / 2, PSNR)
    assert bd_rate(a, b, method).value == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(b, a, method).value == pytest.approx(100.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_one_db_better_everywhere_is_plus_one_db(method):
    a, b = Curve.of(RATES, PSNR), Curve.of(RATES, PSNR + 1.0)
    d = bd_quality(a, b, method)
    assert d.value == pytest.approx(1.0, abs=1e-9) and d.interval == pytest.approx((100.0, 800.0))


def test_small_overlap_is_flagged_and_none_is_none():
    a = Curve.of(RATES, PSNR)  # 30..39 dB
    sliver = Curve.of(RATES * 3, PSNR + 8.0)  # 38..47 dB: 1 dB in common
    d = bd_rate(a, sliver)
    assert d.value is not None and not d.reliable
    assert d.interval == pytest.approx((38.0, 39.0)) and d.overlap_of_narrower == pytest.approx(1 / 9)
    assert "narrower" in d.note
    apart = Curve.of(RATES, PSNR + 20.0)
    none = bd_rate(a, apart)
    assert none.value is None and not none.reliable and "do not overlap" in none.note


def test_wide_overlap_with_two_points_inside_is_reliable():
    a = Curve.of(RATES, PSNR)
    b = Curve.of(RATES * 0.8, PSNR + 1.5)  # 31.5..40.5 dB: 7.5 of 9 dB
    d = bd_rate(a, b)
    assert d.reliable and d.value < 0


def test_crossover_of_two_straight_lines_is_found():
    # quality linear in log10(rate): anchor slope 10 dB/decade, test slope 5, equal at 300 kbps
    rates = np.array([100.0, 150.0, 300.0, 600.0, 1000.0])
    a = Curve.of(rates, 30 + 10 * np.log10(rates / 300))
    b = Curve.of(rates, 30 + 5 * np.log10(rates / 300))
    cs = crossovers(a, b)
    assert len(cs) == 1
    assert cs[0]["rate"] == pytest.approx(300.0, rel=1e-6)
    assert cs[0]["better_below"] == "test"  # the flatter curve wins at low rates


def test_non_monotone_points_are_dropped_and_reported():
    c = Curve.of([100, 200, 400, 800], [30, 33, 32.5, 36])
    assert list(c.rate) == [100, 200, 800] and c.dropped == [(400.0, 32.5)]
    out = compare(c, c)
    assert out["dropped_points"]["test"] == [(400.0, 32.5)]
    assert all(math.isclose(out["bd_rate"][m]["value"], 0.0, abs_tol=1e-9) for m in METHODS)


def test_too_few_points():
    one = Curve.of([100], [30])
    d = bd_rate(Curve.of(RATES, PSNR), one)
    assert d.value is None and "fewer than two" in d.note


def test_auto_check_extends_a_ladder_beyond_its_rates():
    """The side auto did not choose is read off its curve, the end segment extended beyond its rates
    (here vsr's: 2 VMAF per doubling, 60 at 100 kbps, not its lowest point held flat at 62); the side
    it chose is its own encode, the pipeline measured at that rate."""
    from encoder.benchmarks.rd import auto_check, curve_at

    assert curve_at([(200, 62.0), (400, 64.0)], 100) == (pytest.approx(60.0), True)
    assert curve_at([(200, 62.0), (400, 64.0)], 1600) == (pytest.approx(68.0), True)
    assert curve_at([(400, 64.0), (200, 62.0)], 200 * 2 ** 0.5) == (pytest.approx(63.0), False)
    points = [{"pipeline": "native", "kbps": k, "vmaf": q} for k, q in ((100, 50.0), (400, 70.0))]
    points += [{"pipeline": "vsr", "kbps": k, "vmaf": q} for k, q in ((200, 62.0), (400, 64.0))]
    decision = {"probe_s": 1.0, "margin": 3.0}
    points.append({"pipeline": "auto", "kbps": 100, "vmaf": 50.0, "full_crf": 44, "resolution": "full",
                   "decision": decision})
    points.append({"pipeline": "auto", "kbps": 200 * 2 ** 0.5, "vmaf": 62.5, "full_crf": 40, "resolution": "half",
                   "decision": decision})
    full, half = auto_check(points, "vmaf")
    assert (full["native"], full["vsr"], full["extrapolated"]) == (50.0, pytest.approx(60.0), ["vsr"])
    assert full["gap"] == pytest.approx(-10.0)
    # a half point is the vsr pipeline at that rate: 62.5 there, below the chord between its ladder
    # points (63.0); it is judged against native there (65.0), so the wrong side by 2.5
    assert (half["vsr"], half["vsr_chord"], half["native"]) == (62.5, pytest.approx(63.0), pytest.approx(65.0))
    assert half["gap"] == pytest.approx(-2.5) and half["extrapolated"] == []
