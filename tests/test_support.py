"""Support selection for whole volumes: hand cases for the mask-only selectors (through the registry,
the one path of ``fsm2kit segment``), SAM2 embeddings for ``similar`` (its one rule, most_similar)."""

from __future__ import annotations

import numpy as np
import pytest

from fsm2kit.strategies.support_selectors import (
    SUPPORT_SELECTORS,
    SimilarityChoice,
    VolumeInputs,
    given_selector,
    given_slices,
    most_similar,
    organ_slices,
    similarity_matrix,
    slice_embedding,
)


def _mask(z_present, areas=None, shape=(40, 6, 6)) -> np.ndarray:
    m = np.zeros(shape, bool)
    for i, z in enumerate(z_present):
        a = 1 if areas is None else areas[i]
        m[z].flat[:a] = True
    return m


def _volume(name, mask, npart=3):
    return SUPPORT_SELECTORS.get(name).volume_slices(np.asarray(mask, np.uint8), 1, npart=npart)


def test_protocol_middle_largest_given_by_hand():
    m = _mask(range(12, 36))  # PROTOCOL.md section 8 item 1: organ on 12..35
    assert organ_slices(m).tolist() == list(range(12, 36))
    assert _volume("protocol", m) == [16, 24, 32]
    assert _volume("middle", m) == [24]  # L[24 // 2]
    assert _volume("protocol", _mask([10, 11, 12, 15, 16, 17, 18, 19, 20])) == [11, 16, 19]  # item 7
    assert _volume("protocol", _mask([10, 11])) == [10, 11, 11]  # item 6
    assert _volume("protocol", m, npart=1) == [24]

    ar = _mask([3, 4, 5, 6], areas=[2, 9, 9, 1])
    assert _volume("largest", ar) == [4]  # the lowest z of the tie 4/5
    assert given_slices(ar, 5) == [5] and given_slices(ar, [3, -35]) == [3, 5]
    assert _volume("given:6", ar) == [6]
    assert given_selector([3, -35]).volume_slices(ar.astype(np.uint8), 1) == [3, 5]  # by hand: numpy-style indices


def test_label_volumes_and_errors():
    lab = np.zeros((10, 4, 4), np.uint8)
    lab[2:5, 0, 0] = 6
    lab[7, 1, 1] = 1
    assert organ_slices(lab, label=6).tolist() == [2, 3, 4]
    assert SUPPORT_SELECTORS.get("middle").volume_slices(lab, 1) == [7]
    with pytest.raises(ValueError, match="not binary"):
        organ_slices(lab)
    with pytest.raises(ValueError, match="empty for label 3"):
        organ_slices(lab, label=3)
    with pytest.raises(ValueError, match="empty for label 6 on slice 7.*z 2..4"):
        given_slices(lab, 7, label=6)
    with pytest.raises(ValueError, match="outside"):
        given_slices(lab, 10, label=6)
    with pytest.raises(TypeError, match="integers"):
        given_slices(lab, [2.5], label=6)
    with pytest.raises(ValueError, match="empty for the organ on slice 7"):
        SUPPORT_SELECTORS.get("given:7").volume_slices(lab, 6)
    with pytest.raises(ValueError, match="needs the engine"):
        SUPPORT_SELECTORS.get("similar").volume_slices(lab, 6)
    with pytest.raises(ValueError, match="unknown support selector 'best'"):
        SUPPORT_SELECTORS.get("best")
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        organ_slices(np.ones((4, 4), bool))


class _Embed:
    """Stands in for an engine: the 'embedding' of a slice is the slice itself."""

    def __init__(self):
        self.encoded = 0

    def encode(self, image):
        import torch
        from types import SimpleNamespace

        self.encoded += 1
        return SimpleNamespace(backbone_fpn=(torch.from_numpy(np.array(image, np.float32))[None, None],))


def test_most_similar_one_rule_by_hand():
    """Mean cosine over each candidate's targets; equal to 6 decimals ties; ties to the candidate
    nearest the middle of the candidates, then the lower z."""
    rng = np.random.default_rng(0)
    sup = rng.normal(size=(8, 4, 5))
    query = rng.normal(size=(5, 4, 5))
    query[1] = sup[3]
    choice = most_similar(_Embed(), query, sup, [[(z, [1]) for z in range(2, 7)]], mode="volume", targets=("v",))
    assert isinstance(choice, SimilarityChoice) and choice.support_z == (3,) and choice.candidates == (2, 3, 4, 5, 6)
    assert choice.best_score()[0] == pytest.approx(1.0) and choice.as_dict() == {"v": 3}
    # every candidate identical to its own target: all tie at 1.0 -> the middle candidate
    same = most_similar(_Embed(), sup, sup, [[(z, [z]) for z in range(1, 7)]], mode="volume", targets=("v",))
    assert same.support_z == (4,)  # candidates 1..6: the middle is 4
    # two decisions with their own candidates; NaN where a slice is no candidate of a decision
    two = most_similar(_Embed(), query, sup, [[(2, [1]), (3, [1])], [(5, [0, 2]), (6, [0, 2])]],
                       mode="chunk", targets=(0, 1))
    assert two.support_z[0] == 3 and two.scores.shape == (2, 4) and np.isnan(two.scores[0, 2:]).all()
    with pytest.raises(ValueError, match="every decision needs candidates"):
        most_similar(_Embed(), query, sup, [[]], mode="volume", targets=("v",))


def test_similar_for_episodes_and_for_the_volume_share_the_rule():
    rng = np.random.default_rng(1)
    sup = rng.normal(size=(10, 4, 5)).astype(np.float32)
    lab = np.zeros(sup.shape, np.uint8)
    lab[2:8, 1:3, 1:3] = 1  # organ slices 2..7; chunks [2, 3] [4, 5] [6, 7]
    query = rng.normal(size=(6, 4, 5)).astype(np.float32)
    query[[0, 1]] = sup[3]
    query[[4, 5]] = sup[6]
    chunks = [0, 0, 1, 1, 2, 2]
    per_chunk = SUPPORT_SELECTORS.get("similar").episode_choice(_Embed(), query, chunks, sup, lab, 1, 3)
    assert per_chunk.mode == "chunk" and per_chunk.targets == (0, 1, 2)
    assert per_chunk.support_z[0] == 3 and per_chunk.support_z[2] == 6 and per_chunk.support_z[1] in (4, 5)
    per_query = SUPPORT_SELECTORS.get("similar:query").episode_choice(_Embed(), query, chunks, sup, lab, 1, 3)
    assert per_query.as_dict()[(0, 0)] == 3 and per_query.as_dict()[(5, 2)] == 6 and len(per_query.targets) == 18
    # the volume: each organ slice compared with the query slice it would start from
    model = VolumeInputs(_Embed(), query, sup, start_of=lambda z: 4)
    zs, choice = SUPPORT_SELECTORS.get("similar").volume_choice(lab, 1, model=model)
    assert zs == [6] and choice.mode == "volume" and choice.candidates == tuple(range(2, 8))
    with pytest.raises(ValueError, match="episode_choice|needs no model"):
        SUPPORT_SELECTORS.get("middle").episode_choice(_Embed(), query, chunks, sup, lab, 1, 3)


@pytest.mark.slow
def test_similarity_with_sam2(tiny256):
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

    # a slice is most similar to itself (cosine 1): the volume rule with each query slice as target
    for q in range(4):
        choice = most_similar(engine, query, ct.array, [[(z, [q]) for z in range(8, 14)]], mode="volume",
                              targets=(q,))
        assert choice.support_z == (9 + q,) and choice.candidates == tuple(range(8, 14))
        np.testing.assert_allclose(choice.best_score(), 1.0, atol=1e-6)
    assert engine.stats.encoder_passes == 6  # the query slices are candidates: encoded once
    m = similarity_matrix(engine, query[:2], query[:2])
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-6)
    assert engine.stats.encoder_passes == 6
