"""Bootstrap intervals over items: the right width, the right coverage, paired rows kept together."""

from __future__ import annotations

import numpy as np
import pytest

from rice_lab.errors import ConfigError
from rice_lab.evaluate import bootstrap_ci


def test_interval_has_the_estimate_inside_and_is_seeded():
    values = np.random.default_rng(0).normal(5.0, 2.0, 400)
    interval = bootstrap_ci(values)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low < interval.estimate < interval.high
    assert bootstrap_ci(values) == interval and bootstrap_ci(values, seed=1) != interval
    # a 95 % interval of a mean is about +- 1.96 standard errors wide
    half_width = (interval.high - interval.low) / 2
    assert half_width == pytest.approx(1.96 * values.std(ddof=1) / np.sqrt(len(values)), rel=0.15)
    assert "95% CI" in str(interval)


def test_ninety_five_percent_intervals_cover_the_true_value_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(200):
        interval = bootstrap_ci(rng.normal(0.0, 1.0, 60), resamples=400, seed=i)
        hits += interval.low <= 0.0 <= interval.high
    assert 0.88 <= hits / 200 <= 0.99


def test_rows_are_resampled_whole_so_paired_measurements_stay_paired():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 300)
    pairs = np.column_stack([base + 0.1, base])  # a constant gain of 0.1 under large per-item noise
    gain = bootstrap_ci(pairs, statistic=lambda rows: float(np.mean(rows[:, 0] - rows[:, 1])))
    assert gain.low == pytest.approx(0.1) and gain.high == pytest.approx(0.1)  # pairing removes the noise


@pytest.mark.parametrize("kwargs, message", [({"values": [1.0]}, "at least two items"),
                                             ({"values": [1.0, 2.0], "level": 1.5}, "level=1.5"),
                                             ({"values": [1.0, 2.0], "resamples": 10}, "resamples=10")])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        bootstrap_ci(**kwargs)
