"""Future times continue each series' own spacing (numbers, dates at pandas' inferred
frequency); series without one fall back to step numbers; the table reader keeps times typed."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from lora_forecast.config import DataConfig
from lora_forecast.data import timeaxis
from lora_forecast.data.series import SeriesSet
from lora_forecast.data.tabular import read_table
from lora_forecast.data.timeaxis import future_axis, next_times


def dates(*days: str) -> np.ndarray:
    return np.array(days, dtype="datetime64[ns]")


@pytest.mark.parametrize(("times", "horizon", "expected"), [
    (np.array([1900, 1901, 1902]), 3, np.array([1903, 1904, 1905])),  # years stay integers
    (np.array([0, 5]), 2, np.array([10, 15])),  # two times: their one gap
    (np.array([0.0, 0.5, 1.0]), 2, np.array([1.5, 2.0])),
    (np.array([0.0, 0.1, 0.2]), 2, np.array([0.3, 0.4])),  # exactly: no 0.30000000000000004
    # the Lotka-Volterra file's axis: 100 steps over 200 time units, step 200/99
    (np.linspace(0.0, 200.0, 100), 2, np.array([200.0 + 200 / 99, 200.0 + 400 / 99])),
    (dates("2024-02-27", "2024-02-28", "2024-02-29"), 2, dates("2024-03-01", "2024-03-02")),
    (dates("2024-01-31", "2024-02-29", "2024-03-31"), 3,  # month ends, not 30-day gaps
     dates("2024-04-30", "2024-05-31", "2024-06-30")),
    (dates("2023-11-01", "2023-12-01", "2024-01-01"), 2, dates("2024-02-01", "2024-03-01")),
    (dates("2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08",
           "2024-03-11"), 2, dates("2024-03-12", "2024-03-13")),  # Mon..Fri, Mon: business
    (dates("2024-03-06", "2024-03-07", "2024-03-08", "2024-03-11"), 1,  # over a weekend
     dates("2024-03-12")),
    (dates("2024-01-01", "2024-04-01", "2024-07-01"), 1, dates("2024-10-01")),  # quarters
    (dates("2024-01-01T00:00", "2024-01-01T06:00"), 2,
     dates("2024-01-01T12:00", "2024-01-01T18:00")),
])
def test_next_times_continue_the_spacing(times, horizon, expected) -> None:
    got = next_times(times, horizon)
    assert got.dtype.kind == expected.dtype.kind
    if expected.dtype.kind == "f" and len(times) > 3:  # long float axes: to rounding
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("times", [
    np.array([0, 1, 3, 4]),
    np.array([0.0, 1.0, 2.5]),
    np.array([7]),  # one time: no spacing
    dates("2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05"),  # a day missing
])
def test_irregular_times_have_no_continuation(times) -> None:
    assert next_times(times, 2) is None


def test_future_axis_falls_back_to_steps_for_every_series_when_one_is_irregular() -> None:
    values = (np.ones((3, 1)), np.ones((3, 1)))
    regular = SeriesSet(("a", "b"), values, (np.arange(3), np.array([10, 20, 30])), ("x",),
                        time_name="year", id_name="id")
    axis = future_axis(regular, 2)
    assert axis.name == "year" and axis.irregular == () and axis.timed
    assert [t.tolist() for t in axis.times] == [[3, 4], [40, 50]]
    ragged = SeriesSet(("a", "b"), values, (np.arange(3), np.array([10, 20, 40])), ("x",),
                       time_name="year", id_name="id")
    axis = future_axis(ragged, 2)
    assert axis.name == "step" and axis.irregular == ("b",) and not axis.timed
    assert [t.tolist() for t in axis.times] == [[1, 2], [1, 2]]


def test_docstring_examples() -> None:
    result = doctest.testmod(timeaxis, extraglobs={"np": np})
    assert result.attempted >= 3 and result.failed == 0


def test_reader_keeps_times_typed_and_names_the_columns(tmp_path) -> None:
    wide = tmp_path / "in.csv"
    wide.write_text("year,hares\n1900,1.5\n1901,2\n1902,2.5\n")
    series = read_table(wide, DataConfig(time_column="year"))
    assert series.times[0].dtype == np.int64 and series.times[0].tolist() == [1900, 1901, 1902]
    assert (series.time_name, series.id_name, series.by_file) == ("year", None, True)
    assert series.label(0) == "series from in.csv"
    long = tmp_path / "long.csv"
    long.write_text("shop,date,sales\nx,2024-01-31,1\nx,2024-02-29,2\ny,2024-01-01,3\n")
    series = read_table(long, DataConfig(id_column="shop", time_column="date"))
    assert series.times[0].dtype.kind == "M"
    assert series.times[0].tolist() == dates("2024-01-31", "2024-02-29").tolist()
    assert (series.time_name, series.id_name, series.by_file) == ("date", "shop", False)
    assert [series.label(i) for i in range(2)] == ["series x", "series y"]
    assert series.subset([1]).time_name == "date" and series.subset([1]).label(0) == "series y"


def test_dates_with_offsets_are_read_as_utc(tmp_path) -> None:
    path = tmp_path / "tz.csv"
    path.write_text("time,v\n2024-01-01T00:00+01:00,1\n2024-01-02T00:00+01:00,2\n"
                    "2024-01-03T00:00+01:00,3\n")
    (times,) = read_table(path, DataConfig()).times
    np.testing.assert_array_equal(times, dates("2023-12-31T23:00", "2024-01-01T23:00",
                                               "2024-01-02T23:00"))
    np.testing.assert_array_equal(next_times(times, 1), dates("2024-01-03T23:00"))
