"""Global and LLMTIME per-series scaling: properties of the scaled values, round trips."""

from __future__ import annotations

import numpy as np

from lora_forecast.data.scaling import Scaling, fit_scaling

HISTORY = np.array([[2.0, -1.0], [4.0, 0.0], [6.0, 3.0], [10.0, 1.0]])  # [T, V]


def test_per_series_quantile_maps_to_one_per_variable() -> None:
    scale = Scaling("per_series", 1.0, quantile=1.0, offset=0.0).for_history(HISTORY)
    np.testing.assert_allclose(np.abs(scale.apply(HISTORY)).max(axis=0), [1.0, 1.0])
    np.testing.assert_allclose(scale.scale, [10.0, 3.0])  # max |x| of each column


def test_offset_shifts_below_the_minimum_by_a_fraction_of_the_range() -> None:
    scale = Scaling("per_series", 1.0, quantile=1.0, offset=0.5).for_history(HISTORY)
    shifted = HISTORY - scale.shift
    # min - 0.5 (max - min): the smallest value lands at half the range, all >= 0
    np.testing.assert_allclose(shifted.min(axis=0), [4.0, 2.0])
    assert (scale.apply(HISTORY) >= 0).all()
    np.testing.assert_allclose(scale.invert(scale.apply(HISTORY)), HISTORY, rtol=1e-15)


def test_constant_zero_series_keeps_unit_scale() -> None:
    scale = Scaling("per_series", 1.0).for_history(np.zeros((5, 1)))
    assert scale.scale.tolist() == [1.0]


def test_global_scale_is_alpha_and_text_scale_leaves_it_to_the_codec() -> None:
    scaling = fit_scaling("global", 10.0, [HISTORY], 0.9, 0.0, ("a", "b"))
    assert scaling.for_history(HISTORY).scale.tolist() == [10.0, 10.0]
    np.testing.assert_array_equal(scaling.text_scale(HISTORY).apply(HISTORY), HISTORY)
    assert Scaling.from_dict(scaling.to_dict()) == scaling


def test_auto_alpha_comes_from_the_training_values_only() -> None:
    # choose_alpha maps the 0.99 quantile of |x| to 9: of [0 .. 18] that is 17.82 -> 1.98
    train = [np.linspace(0.0, 18.0, 101)[:, None]]
    scaling = fit_scaling("global", "auto", train, 0.9, 0.0, ("x",))
    assert abs(scaling.alpha - 17.82 / 9.0) < 1e-12
