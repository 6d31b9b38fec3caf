"""insarcloud.core.pairs against known cases and a brute-force enumeration of triplets."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insarcloud.core.pairs import (
    closed_triplets,
    epochs,
    pair_dates,
    pair_name,
    pair_names,
    pair_problem,
    pair_timestamps,
    split_pair,
)
from insarcloud.errors import CubeError, NetworkError, PairNameError


def test_split_and_timestamps_of_a_valid_pair() -> None:
    assert split_pair("20240106_20240118") == ("20240106", "20240118")
    assert pair_timestamps("20240106_20240118") == (pd.Timestamp("2024-01-06"), pd.Timestamp("2024-01-18"))


@pytest.mark.parametrize(("name", "why"), [
    ("2024_01", "not YYYYMMDD_YYYYMMDD"),
    ("20240106-20240118", "not YYYYMMDD_YYYYMMDD"),
    ("20240106_20240118_20240130", "not YYYYMMDD_YYYYMMDD"),
    ("20241318_20241330", "20241318 is not a date"),
    ("20240106_20240231", "20240231 is not a date"),
    ("20240118_20240106", "primary date 20240118 is not earlier than secondary 20240106"),
    ("20240106_20240106", "primary date 20240106 is not earlier than secondary 20240106"),
])
def test_bad_names_are_refused_naming_the_pair(name: str, why: str) -> None:
    assert pair_problem(name) == why
    with pytest.raises(PairNameError, match=f"pair name '{name}': {why}"):
        split_pair(name)
    # the one error is both a cube and a network error: callers that caught either still do
    for cls in (CubeError, NetworkError, ValueError):
        with pytest.raises(cls):
            pair_timestamps(name)


def test_pair_dates_and_epochs_of_a_list() -> None:
    pairs = ["20240118_20240130", "20240106_20240118", "20240106_20240130"]
    prim, sec = pair_dates(pairs)
    assert list(prim.strftime("%Y%m%d")) == ["20240118", "20240106", "20240106"]
    assert list(sec.strftime("%Y%m%d")) == ["20240130", "20240118", "20240130"]
    assert prim.dtype == "datetime64[ns]"
    assert epochs(pairs) == ["20240106", "20240118", "20240130"]
    with pytest.raises(PairNameError, match="20240130_20240118"):
        pair_dates(pairs + ["20240130_20240118"])
    assert pair_dates([])[0].size == 0


def test_names_from_dates_round_trip() -> None:
    dates = np.array(["2024-01-06", "2024-01-18", "2024-01-30"], dtype="datetime64[D]")
    names = pair_names(dates, np.array([0, 1, 0]), np.array([1, 2, 2]))
    assert names == ["20240106_20240118", "20240118_20240130", "20240106_20240130"]
    assert pair_name(dates[0], pd.Timestamp("2024-01-18 00:00")) == names[0]
    assert [pair_name(*pair_timestamps(n)) for n in names] == names


def test_triplets_of_a_known_network() -> None:
    # epochs 0..3; pairs 01 12 02 23 13 03: triplets 012, 013, 023, 123 (all of a complete 4-epoch graph)
    prim, sec = [0, 1, 0, 2, 1, 0], [1, 2, 2, 3, 3, 3]
    t = closed_triplets(prim, sec)
    assert t.dtype == np.int64 and t.shape == (4, 3)
    assert t.tolist() == [[0, 1, 2], [0, 4, 5], [2, 3, 5], [1, 3, 4]]  # ordered by epochs (i, j, k)
    assert closed_triplets([0, 1], [1, 2]).shape == (0, 3)  # a chain has no loop
    assert closed_triplets([], []).shape == (0, 3)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 8), st.integers(0, 8)).filter(lambda p: p[0] < p[1]), max_size=30),
       st.randoms(use_true_random=False))
def test_triplets_equal_brute_force(pairs: set[tuple[int, int]], rnd) -> None:
    pairs_l = sorted(pairs)
    rnd.shuffle(pairs_l)
    index = {p: n for n, p in enumerate(pairs_l)}
    want = sorted(((index[(i, j)], index[(j, k)], index[(i, k)]), (i, j, k))
                  for i, j, k in itertools.combinations(range(9), 3)
                  if (i, j) in index and (j, k) in index and (i, k) in index)
    want = [list(row) for row, _ in sorted(want, key=lambda w: w[1])]
    got = closed_triplets([p for p, _ in pairs_l], [s for _, s in pairs_l])
    assert got.tolist() == want
    # the same network keyed by date strings gives the same rows
    day = [f"2024{m:02d}01" for m in range(1, 10)]
    assert closed_triplets([day[p] for p, _ in pairs_l], [day[s] for _, s in pairs_l]).tolist() == want
