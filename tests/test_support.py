"""Support selectors: hand cases for the mask-only ones, SAM2 embeddings for the similarity ones."""

from __future__ import annotations

import numpy as np
import pytest

from fsm2kit.strategies.selectors import (
    SimilarityChoice,
    given_slices,
    largest_slice,
    middle_slice,
    most_similar_per_chunk,
    most_similar_per_query,
    organ_slices,
    protocol_slices,
    select_support_slices,
    similarity_matrix,
    slice_embedding,
)


def _mask(z_present, areas=None, shape=(40, 6, 6)) -> np.ndarray:
    m = np.zeros(shape, bool)
    for i, z in enumerate(z_present):
        a = 1 if areas is None else areas[i]
        m[z].flat[:a] = True
    return m


def test_protocol_middle_largest_given_by_hand():
    m = _mask(range(12, 36))  # PROTOCOL.md section 8 item 1: organ on 12..35
    assert organ_slices(m).tolist() == list(range(12, 36))
    assert protocol_slices(m) == [16, 24, 32]
    assert middle_slice(m) == 24  # L[24 // 2]
    assert select_support_slices(m, "protocol") == [16, 24, 32]
    assert select_support_slices(m, "middle") == [24]
    assert protocol_slices(_mask([10, 11, 12, 15, 16, 17, 18, 19, 20])) == [11, 16, 19]  # item 7
    assert protocol_slices(_mask([10, 11])) == [10, 11, 11]  # item 6
    assert protocol_slices(m, npart=1) == [24]

    ar = _mask([3, 4, 5, 6], areas=[2, 9, 9, 1])
    assert largest_slice(ar) == 4  # the lowest z of the tie 4/5
    assert select_support_slices(ar, "largest") == [4]
    assert given_slices(ar, 5) == [5] and given_slices(ar, [3, -35]) == [3, 5]
    assert select_support_slices(ar, "given", z=[6]) == [6]


def test_label_volumes_and_errors():
    lab = np.zeros((10, 4, 4), np.uint8)
    lab[2:5, 0, 0] = 6
    lab[7, 1, 1] = 1
    assert organ_slices(lab, label=6).tolist() == [2, 3, 4]
    assert middle_slice(lab, label=1) == 7
    with pytest.raises(ValueError, match="not binary"):
        organ_slices(lab)
    with pytest.raises(ValueError, match="empty for label 3"):
        middle_slice(lab, label=3)
    with pytest.raises(ValueError, match="empty for label 6 on slice 7.*z 2..4"):
        given_slices(lab, 7, label=6)
    with pytest.raises(ValueError, match="outside"):
        given_slices(lab, 10, label=6)
    with pytest.raises(TypeError, match="integers"):
        given_slices(lab, [2.5], label=6)
    with pytest.raises(ValueError, match="Engine"):
        select_support_slices(lab, "similar", label=6)
    with pytest.raises(ValueError, match="Unknown support selector"):
        select_support_slices(lab, "best", label=6)
    with pytest.raises(ValueError, match="needs z"):
        select_support_slices(lab, "given", label=6)
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        organ_slices(np.ones((4, 4), bool))


@pytest.mark.slow
def test_similarity_selectors_with_sam2(tiny256):
    from fsm2kit.io.examples import example_ct
    from fsm2kit.engine import Engine

    ct = example_ct()
    liver = ct.labels.mask("liver")
    liver[:8] = False
    liver[14:] = False  # candidates: the 6 slices 8..13
    engine = Engine(tiny256, progress=False)
    query = ct.array[9:13]  # four of the candidates
    e = slice_embedding(engine, query[0])
    assert e.ndim == 1 and np.linalg.norm(e) == pytest.approx(1.0)
    assert slice_embedding(engine, query[0], pool="mean").shape == (256,)

    choice = most_similar_per_query(engine, query, ct.array, liver)
    assert isinstance(choice, SimilarityChoice) and choice.mode == "per_query"
    assert choice.candidates == tuple(range(8, 14))
    # a slice is most similar to itself (cosine 1)
    assert choice.support_z == tuple(range(9, 13))
    np.testing.assert_allclose(choice.best_score(), 1.0, atol=1e-6)
    assert choice.scores.shape == (4, 6) and "per_query" in repr(choice)
    assert engine.stats.encoder_passes == 6  # the query slices are candidates: encoded once

    by_chunk = most_similar_per_chunk(engine, query, [0, 0, 1, 1], ct.array, liver)
    assert by_chunk.targets == (0, 1) and by_chunk.scores.shape == (2, 6)
    np.testing.assert_allclose(by_chunk.scores[0], choice.scores[:2].mean(axis=0))
    assert set(by_chunk.support_z) <= set(range(8, 14))
    m = similarity_matrix(engine, query[:2], query[:2])
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-6)
    assert engine.stats.encoder_passes == 6
    with pytest.raises(ValueError, match="one chunk id per query slice"):
        most_similar_per_chunk(engine, query, [0, 1], ct.array, liver)
