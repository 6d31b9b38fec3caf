from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import NetworkError
from insarcloud.invert.network import analyse_network, build_network, design_increments

from .invert_helpers import chain_network


def test_design_matrices_and_counts():
    net = chain_network(6, 2)
    rep = analyse_network(net)
    assert rep.n_pair == 9 and rep.n_date == 6 and rep.n_components == 1 and not rep.gaps
    # pair (1, 3): increments 1 and 2
    i = int(np.flatnonzero((net.primary_idx == 1) & (net.secondary_idx == 3))[0])
    np.testing.assert_array_equal(rep.design_increments[i], [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(rep.design_epochs[i], [0, -1, 0, 1, 0, 0])
    np.testing.assert_array_equal(rep.ifgs_per_epoch, [2, 3, 4, 4, 3, 2])
    # both designs give the same interferograms from a cumulative series
    cum = np.array([0.0, 1, 3, 2, 5, 4])
    np.testing.assert_allclose(rep.design_increments @ np.diff(cum), rep.design_epochs @ cum)
    assert net.bandwidth == 2


def test_split_network_is_reported():
    net = chain_network(8, 1, drop=((3, 4),))
    rep = analyse_network(net)
    assert rep.n_components == 2
    np.testing.assert_array_equal(rep.component, [0, 0, 0, 0, 1, 1, 1, 1])
    assert len(rep.gaps) == 1 and str(rep.gaps[0][0])[:10] == "2020-02-10"
    text = rep.summary()
    assert "SPLIT" in text and "2 connected component" in text and "gap" in text


def test_gap_without_split():
    # pairs (0,2),(1,3),(2,3),(0,1): every epoch connected; increment 1->2 spanned by (0,2) and (1,3)
    d = np.datetime64("2021-01-01", "ns") + np.arange(4) * np.timedelta64(6, "D")
    net = build_network(d[[0, 1, 2, 0]], d[[2, 3, 3, 1]])
    rep = analyse_network(net)
    assert rep.n_components == 1 and rep.gaps == []
    assert design_increments(net).shape == (4, 3)


@pytest.mark.parametrize("prim, sec, msg", [
    ([], [], "empty"),
    (["2020-01-02"], ["2020-01-01"], "precede"),
    (["2020-01-01", "2020-01-01"], ["2020-01-13", "2020-01-13"], "duplicate"),
])
def test_bad_pair_lists(prim, sec, msg):
    with pytest.raises(NetworkError, match=msg):
        build_network(np.array(prim, "datetime64[ns]"), np.array(sec, "datetime64[ns]"))
