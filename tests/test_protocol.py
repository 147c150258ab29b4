"""Tests of fsm2kit.protocol against the checkable facts of PROTOCOL.md section 8.

Item numbers refer to PROTOCOL.md section 8. Item 14 (averaging) is in test_metrics.py;
items 15-17 (min-max invariance, npz naming, SAM2 preprocessing) belong to other modules.
"""

from __future__ import annotations

import numpy as np
import pytest

from fsm2kit import protocol as P
from fsm2kit.protocol import labels as L
from fsm2kit.protocol.episodes import Episode
from fsm2kit.protocol import (
    alp_chunk_index,
    alp_support_index,
    build_episode,
    chaos_gray_to_label,
    ct_window,
    fold_split,
    resolve_label,
    support_slices,
)
from fsm2kit.protocol.preprocessing import alp_resampled_size
from fsm2kit.protocol.slices import (
    alp_support_pcts,
    chunk_ids,
    class_slices,
    gmrd_chunk_boundaries,
    scored_range,
)


# --------------------------------------------------------------------------- helpers


def label_volume(zs, *, depth=40, size=8, label=1, other=None):
    """A (depth, size, size) label volume with ``label`` on slices ``zs`` (a 2x2 square)."""
    lab = np.zeros((depth, size, size), dtype=np.float32)  # stored labels are float32
    for z in zs:
        lab[z, 2:4, 3:5] = label
    if other is not None:  # another class elsewhere, to check it is ignored
        lab[:, 6, 6] = other
    return lab


def image_volume(depth=40, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(depth, size, size)).astype(np.float64)


def alp_chunks(zs):
    return chunk_ids(np.arange(min(zs), max(zs) + 1), variant="ALP").tolist()


def runs(chunks, z0):
    """{chunk: (first z, last z, count)} of an ALP chunk vector starting at z0."""
    out = {}
    for i, c in enumerate(chunks):
        z = z0 + i
        lo, hi, n = out.get(c, (z, z, 0))
        out[c] = (lo, z, n + 1)
    return out


# ------------------------------------------------------------- item 1: organ on 12..35


def test_item1_support_slices_12_to_35():
    lab = label_volume(range(12, 36))
    assert support_slices(lab, 1) == [16, 24, 32]  # L[4], L[12], L[20]


def test_item1_alp_chunks_12_to_35():
    chunks = alp_chunks(range(12, 36))
    assert runs(chunks, 12) == {0: (12, 19, 8), 1: (20, 27, 8), 2: (28, 35, 8)}


def test_item1_gmrd_boundaries_give_same_chunks():
    assert gmrd_chunk_boundaries(24).tolist() == [0, 8, 16, 24]
    z = np.arange(12, 36)
    assert chunk_ids(z, variant="GMRD").tolist() == chunk_ids(z, variant="ALP").tolist()


# --------------------------------------------------------------------------- item 2: organ on 0..22


def test_item2_support_slices_0_to_22():
    assert support_slices(label_volume(range(0, 23)), 1) == [3, 11, 19]


def test_item2_alp_chunks_8_7_8():
    assert runs(alp_chunks(range(0, 23)), 0) == {0: (0, 7, 8), 1: (8, 14, 7), 2: (15, 22, 8)}


def test_item2_gmrd_chunks_7_8_8_differ_from_alp():
    assert gmrd_chunk_boundaries(23).tolist() == [0, 7, 15, 23]
    z = np.arange(23)
    gmrd = chunk_ids(z, variant="GMRD").tolist()
    assert runs(gmrd, 0) == {0: (0, 6, 7), 1: (7, 14, 8), 2: (15, 22, 8)}
    assert gmrd != chunk_ids(z, variant="ALP").tolist()


# --------------------------------------------------------------------------- items 3-7


def test_item3_organ_5_to_14():
    assert support_slices(label_volume(range(5, 15)), 1) == [6, 10, 13]
    assert runs(alp_chunks(range(5, 15)), 5) == {0: (5, 7, 3), 1: (8, 10, 3), 2: (11, 14, 4)}


def test_item4_organ_0_to_29():
    assert support_slices(label_volume(range(0, 30)), 1) == [5, 15, 25]
    assert runs(alp_chunks(range(0, 30)), 0) == {0: (0, 9, 10), 1: (10, 19, 10), 2: (20, 29, 10)}


def test_item5_single_slice():
    assert support_slices(label_volume([10]), 1) == [10, 10, 10]
    assert chunk_ids([10], variant="ALP").tolist() == [0]
    # the literal formula divides by zero and falls back to chunk 0
    assert alp_chunk_index(10, 10, 10, 3) == 0


def test_item6_two_slices_middle_chunk_empty():
    assert support_slices(label_volume([10, 11]), 1) == [10, 11, 11]
    assert chunk_ids([10, 11], variant="ALP").tolist() == [0, 2]


def test_item7_non_contiguous_support():
    L = [10, 11, 12, 15, 16, 17, 18, 19, 20]
    assert support_slices(label_volume(L), 1) == [11, 16, 19]  # L[1], L[4], L[7]


# --------------------------------------------------------------------------- item 8: equivalences


def test_item8_support_pcts_values():
    assert alp_support_pcts(3) == (0.16666666666666666, 0.5, 0.8333333333333334)
    assert alp_support_pcts(1) == (0.5,)


def test_item8_support_float_formula_equals_integer_formula():
    for n in range(1, 401):
        for p in range(3):
            assert alp_support_index(n, p, 3) == (n * (2 * p + 1)) // 6, (n, p)


@pytest.mark.parametrize("npart", [1, 3, 5])
def test_item8_chunk_float_formula_equals_integer_formula(npart):
    # interval lengths d = 1..599, every offset k in [0, d] (PROTOCOL.md 3.4 and section 8)
    for d in range(1, 600):
        for k in range(d + 1):
            closed = min(npart * k // d, npart - 1)
            assert alp_chunk_index(k, 0, d, npart) == closed, (npart, d, k)


def test_item8_chunk_ids_match_closed_form_vectorised():
    rng = np.random.default_rng(1)
    for _ in range(50):
        z0 = int(rng.integers(0, 50))
        d = int(rng.integers(1, 120))
        z = np.arange(z0, z0 + d + 1)
        expected = np.minimum(3 * (z - z0) // d, 2)
        assert chunk_ids(z, variant="ALP").tolist() == expected.tolist()


# --------------------------------------------------------------------------- item 9: folds


def test_item9_chaost2_alp_folds():
    f0 = fold_split("CHAOST2", 0)
    assert f0.query_ids == (1, 2, 3, 5) and f0.support_id == 8
    f4 = fold_split("CHAOST2", 4)
    assert f4.query_ids == (36, 37, 38, 39) and f4.support_id == 1


def test_item9_sabs_alp_folds():
    f0 = fold_split("SABS", 0)
    assert f0.query_ids == (0, 1, 2, 3, 4, 5) and f0.support_id == 6
    f4 = fold_split("SABS", 4)
    assert f4.query_ids == (24, 25, 26, 27, 28, 29) and f4.support_id == 0


def test_item9_alp_table_all_folds():
    table = {
        "SABS": [(tuple(range(6 * k, 6 * k + 6)), (6 * k + 6) % 30) for k in range(5)],
        "CHAOST2": [
            ((1, 2, 3, 5), 8),
            ((8, 10, 13, 15), 19),
            ((19, 20, 21, 22), 31),
            ((31, 32, 33, 34), 36),
            ((36, 37, 38, 39), 1),
        ],
    }
    for ds, rows in table.items():
        for k, (queries, support) in enumerate(rows):
            s = fold_split(ds, k)
            assert (s.query_ids, s.support_id) == (queries, support), (ds, k)
            assert s.support_id == s.fold_ids[-1]  # the first scan of the next fold


@pytest.mark.parametrize("dataset", ["SABS", "CHAOST2"])
def test_item9_each_scan_is_a_query_in_exactly_one_fold(dataset):
    queries = [q for k in range(5) for q in fold_split(dataset, k).query_ids]
    assert sorted(queries) == list(P.SCAN_IDS[dataset])
    assert len(queries) == len(set(queries))


def test_gmrd_folds_positions():
    assert fold_split("SABS", 0, variant="GMRD").fold_ids == tuple(range(7))
    assert fold_split("SABS", 4, variant="GMRD").fold_ids == (0, 24, 25, 26, 27, 28, 29)
    assert fold_split("CHAOST2", 4, variant="GMRD").fold_ids == (1, 36, 37, 38, 39)


def test_gmrd_default_support_is_first_of_ordered_list():
    s = fold_split("SABS", 0, variant="GMRD")
    assert s.support_id == 0 and s.query_ids == (1, 2, 3, 4, 5, 6)
    s4 = fold_split("SABS", 4, variant="GMRD")
    assert s4.support_id == 0 and s4.query_ids == (24, 25, 26, 27, 28, 29)


def test_gmrd_supp_idx_2_chaost2_as_in_evaluate_sh():
    f0 = fold_split("CHAOST2", 0, variant="GMRD", supp_idx=2)
    assert f0.support_id == 3 and f0.query_ids == (1, 2, 5, 8)
    f4 = fold_split("CHAOST2", 4, variant="GMRD", supp_idx=2)
    assert f4.fold_ids == (1, 36, 37, 38, 39)
    assert f4.support_id == 37 and f4.query_ids == (1, 36, 38, 39)


def test_alp_supp_idx_6_equals_default_minus_1():
    assert fold_split("SABS", 2, supp_idx=6) == fold_split("SABS", 2)
    assert fold_split("CHAOST2", 3, supp_idx=4) == fold_split("CHAOST2", 3)


def test_fold_split_scan_ids_from_disk_are_sorted_numerically():
    on_disk = [str(i) for i in reversed(P.SCAN_IDS["CHAOST2"])]  # e.g. parsed file names
    assert fold_split("CHAOST2", 1, scan_ids=on_disk) == fold_split("CHAOST2", 1)


def test_fold_split_errors():
    with pytest.raises(ValueError, match="30 scans"):
        fold_split("SABS", 0, scan_ids=range(12))
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        fold_split("SABS", 5)
    with pytest.raises(ValueError, match="Unknown dataset"):
        fold_split("BTCV", 0)
    with pytest.raises(ValueError, match="Unknown protocol variant"):
        fold_split("SABS", 0, variant="PANet")
    with pytest.raises(ValueError, match="supp_idx=7"):
        fold_split("SABS", 0, supp_idx=7)
    with pytest.raises(ValueError, match="duplicates"):
        fold_split("CHAOST2", 0, scan_ids=[1] * 20)


def test_fold_split_is_frozen_and_case_insensitive():
    s = fold_split("chaost2", 0, variant="gmrd")
    assert s.dataset == "CHAOST2" and s.variant == "GMRD"
    with pytest.raises(AttributeError):
        s.support_id = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- item 10: label ids


def test_item10_sabs_label_ids():
    assert [resolve_label("SABS", n) for n in ("spleen", "rk", "lk", "liver")] == [1, 2, 3, 6]


def test_item10_chaost2_label_ids():
    assert [resolve_label("CHAOST2", n) for n in ("liver", "rk", "lk", "spleen")] == [1, 2, 3, 4]


def test_item10_chaos_png_values_map_to_ids():
    gray = np.array([[0, 63, 126], [189, 252, 0]], dtype=np.uint8)
    expected = [[0, 1, 2], [3, 4, 0]]
    assert chaos_gray_to_label(gray).tolist() == expected
    assert chaos_gray_to_label(gray, method="fixed").tolist() == expected


def test_chaos_gray_rank_refuses_missing_organ_fixed_handles_it():
    gray = np.array([0, 63, 189, 252])  # no right kidney: rank mapping would shift LK/spleen
    with pytest.raises(ValueError, match="method='fixed'"):
        chaos_gray_to_label(gray)
    assert chaos_gray_to_label(gray, method="fixed").tolist() == [0, 1, 3, 4]
    with pytest.raises(ValueError, match="outside the CHAOS ranges"):
        chaos_gray_to_label(np.array([0, 30]), method="fixed")


def test_evaluated_classes_and_names():
    assert P.EVALUATED_CLASSES == {"SABS": (1, 2, 3, 6), "CHAOST2": (1, 2, 3, 4)}
    assert P.label_name("SABS", 6) == "LIVER" and P.label_name("CHAOST2", 4) == "SPLEEN"


def test_resolve_label_accepts_ids_names_aliases():
    aliases = ("right_kidney", "kidney_right", "RK", "rk", "Right Kidney", "right-kidney", 2, "2")
    for alias in aliases:
        assert resolve_label("SABS", alias) == 2, alias
    for alias in ("left_kidney", "kidney_left", "lk", "LK"):
        assert resolve_label("CHAOST2", alias) == 3, alias
    assert resolve_label("sabs", np.int64(6)) == 6
    assert resolve_label("SABS", 6.0) == 6  # label volumes are stored as float32
    assert resolve_label("SABS", "Liver") == 6 and resolve_label("CHAOST2", "LIVER") == 1


def test_resolve_label_errors_list_valid_names():
    with pytest.raises(ValueError, match=r"LIVER \(1\), RK \(2\), LK \(3\), SPLEEN \(4\)"):
        resolve_label("CHAOST2", "pancreas")
    with pytest.raises(ValueError, match="Valid SABS classes"):
        resolve_label("SABS", 14)
    with pytest.raises(ValueError, match="background"):
        resolve_label("SABS", 0)
    with pytest.raises(TypeError):
        resolve_label("SABS", True)


# One resolver: ``fsm2kit run`` (resolve_label) and ``fsm2kit segment`` (LabelMap) agree.
# These four names used to resolve through LabelMap only, so segment accepted what run refused.
SABS_SPELLINGS = {"vena_cava_inferior": 9, "kidney.right": 2, "portal_splenic_vein": 10, "r_adrenal": 12}


@pytest.mark.parametrize("name", sorted(SABS_SPELLINGS))
def test_run_and_segment_resolve_the_same_id(name):
    from fsm2kit.protocol.labels import LabelMap

    expected = SABS_SPELLINGS[name]
    via_run = resolve_label("SABS", name)  # fsm2kit run --label, ExperimentConfig.classes
    via_segment = LabelMap.from_dataset("SABS").resolve(name)  # fsm2kit segment --label-map SABS
    assert via_run == via_segment == expected
    assert P.label_name("SABS", name) == P.DATASET_LABELS["SABS"][expected]
    # spacing, case and punctuation do not matter, on both paths
    loud = name.upper().replace("_", " ")
    assert resolve_label("SABS", loud) == LabelMap.from_dataset("SABS").resolve(loud) == expected


def test_every_alias_resolves_identically_on_both_paths():
    from fsm2kit.protocol.labels import LabelMap

    for ds, names in P.DATASET_LABELS.items():
        lm = LabelMap.from_dataset(ds)
        spellings = [*names.values(), *L.LABEL_ALIASES, *(str(i) for i in names)]
        for sp in spellings:
            try:
                via_map = lm.resolve(sp)
            except ValueError:
                with pytest.raises(ValueError):
                    resolve_label(ds, sp)
                continue
            if via_map == 0:  # background: a label, never a few-shot target
                with pytest.raises(ValueError, match="background"):
                    resolve_label(ds, sp)
            else:
                assert resolve_label(ds, sp) == via_map, (ds, sp)


@pytest.mark.parametrize("name", ["vena_cava", "kidney", "left", "adrenal", "portal", "liverr"])
def test_unknown_name_errors_on_both_paths_and_lists_valid_names(name):
    from fsm2kit.protocol.labels import LabelMap

    with pytest.raises(ValueError, match=r"Valid SABS classes: SPLEEN \(1\), RK \(2\)"):
        resolve_label("SABS", name)
    with pytest.raises(ValueError, match=r"valid labels of SABS are: 0 BG, 1 SPLEEN, 2 RK"):
        LabelMap.from_dataset("SABS").resolve(name)
    # an organ of the other dataset is not silently mapped to something else
    with pytest.raises(ValueError, match="Unknown CHAOST2 class name 'aorta'"):
        resolve_label("CHAOST2", "aorta")


def test_label_map_alias_groups_never_pick_among_two_organs():
    from fsm2kit.protocol.labels import LabelMap

    custom = LabelMap({1: "kidney_right", 2: "right_kidney_cyst"})
    assert custom.resolve("rk") == 1 and custom.resolve("Right Kidney") == 1
    with pytest.raises(ValueError, match="Unknown label name 'left_kidney'"):
        custom.resolve("left_kidney")
    twice = LabelMap({1: "rk", 2: "kidney_right"})  # two names of one synonym group
    assert twice.resolve("rk") == 1 and twice.resolve("kidney_right") == 2  # exact names win
    with pytest.raises(ValueError, match="ambiguous"):
        twice.resolve("right_kidney")


# ------------------------------------------------------------- item 11: tested classes


def test_item11_tested_classes_per_run():
    assert L.tested_classes("SABS", 0) == (2, 3)
    assert L.tested_classes("CHAOST2", 0) == (2, 3)
    assert L.tested_classes("SABS", 1) == (1, 6)
    assert L.tested_classes("CHAOST2", 1) == (1, 4)
    with pytest.raises(ValueError, match="label_sets"):
        L.tested_classes("SABS", 2)


def test_label_groups_cover_all_four_organs():
    for ds in P.DATASETS:
        assert set(L.tested_classes(ds, 0)) | set(L.tested_classes(ds, 1)) == set(L.PA_ALL[ds])


# --------------------------------------------------------------------------- item 12: CT window


def test_item12_ct_window_values():
    out = ct_window(np.array([-125.0, 275.0, 75.0]))
    assert out.tolist() == [0.0, 255.0, 127.5]


def test_item12_ct_window_clips_outside():
    out = ct_window(np.array([-1000.0, -126.0, 276.0, 3000.0]))
    assert out.tolist() == [0.0, 0.0, 255.0, 255.0]


def test_ct_window_minmax_equals_fixed_when_both_limits_occur():
    hu = np.array([-1000.0, 0.0, 40.0, 1500.0])
    np.testing.assert_allclose(ct_window(hu, minmax=True), ct_window(hu))
    # without both limits the notebook's own-range scaling differs
    soft = np.array([0.0, 100.0])
    assert ct_window(soft, minmax=True).tolist() == [0.0, 255.0]
    with pytest.raises(ValueError, match="constant"):
        ct_window(np.full(3, 500.0), minmax=True)


# --------------------------------------------------------------------------- item 13: SABS size


@pytest.mark.parametrize(
    "spacing",
    [0.546875, 0.59375, 0.6640625, 0.68359375, 0.7421875, 0.78125, 0.859375, 0.9765625, 0.547, 0.977],
)
def test_item13_sabs_in_plane_size_is_257(spacing):
    cropped = 512 - 2 * P.SABS_BORDER
    assert cropped == 448 and P.SABS_SPACING_FACTOR == 1.75
    assert alp_resampled_size(cropped, spacing, spacing * P.SABS_SPACING_FACTOR) == 257


@pytest.mark.parametrize("depth,z_spacing", [(85, 3.0), (147, 2.5), (198, 2.5), (55, 5.0)])
def test_item13_z_becomes_z_plus_1(depth, z_spacing):
    assert alp_resampled_size(depth, z_spacing, z_spacing) == depth + 1


# --------------------------------------------------------------------------- scored range


def test_scored_range_alp_includes_gaps_gmrd_drops_them():
    L = [10, 11, 12, 15, 16]
    lab = label_volume(L, other=3)
    assert scored_range(lab, 1, variant="ALP").tolist() == list(range(10, 17))
    assert scored_range(lab, 1, variant="GMRD").tolist() == L
    assert class_slices(lab, 1).tolist() == L


def test_scored_range_absent_class():
    with pytest.raises(ValueError, match="class 4 absent from the query scan q7"):
        scored_range(label_volume([3]), 4, case_id="q7")


# --------------------------------------------------------------------------- build_episode


def make_episode(q_zs, s_zs, *, variant="ALP", label=1, **kw):
    ql = label_volume(q_zs, label=label, other=5)
    sl = label_volume(s_zs, label=label, other=5)
    return build_episode(
        image_volume(seed=1), ql, image_volume(seed=2), sl, label,
        case_id=1, support_case_id=8, variant=variant, **kw,
    )


def test_build_episode_item1():
    ep = make_episode(range(12, 36), range(12, 36), dataset="CHAOST2", fold=0)
    assert isinstance(ep, Episode)
    assert ep.z.tolist() == list(range(12, 36))
    assert ep.chunks.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert [s.z for s in ep.supports] == [16, 24, 32]
    assert [s.chunk for s in ep.supports] == [0, 1, 2]
    assert ep.label == 1 and ep.label_name == "LIVER" and ep.dataset == "CHAOST2" and ep.fold == 0
    assert ep.case_id == "1" and all(s.case_id == "8" for s in ep.supports)
    assert ep.middle_support.z == 24
    assert ep.meta["chunk_sizes"] == (8, 8, 8) and ep.meta["support_n_slices"] == 24


def test_build_episode_arrays_are_the_right_slices():
    qi, si = image_volume(seed=1), image_volume(seed=2)
    ql, sl = label_volume(range(12, 36), other=5), label_volume(range(5, 15), other=5)
    ep = build_episode(qi, ql, si, sl, 1, case_id="a", support_case_id="b")
    assert ep.images.dtype == np.float32 and ep.labels.dtype == bool
    np.testing.assert_allclose(ep.images, qi[12:36].astype(np.float32))
    np.testing.assert_array_equal(ep.labels, ql[12:36] == 1)
    for s in ep.supports:
        np.testing.assert_allclose(s.image, si[s.z].astype(np.float32))
        np.testing.assert_array_equal(s.mask, sl[s.z] == 1)  # the other class (5) is excluded
        assert s.mask.dtype == bool
    assert ep.label_name == "1"  # no dataset: the id as name


def test_build_episode_non_contiguous_alp_keeps_gaps():
    L = [10, 11, 12, 15, 16, 17, 18, 19, 20]
    ep = make_episode(L, L)
    assert ep.z.tolist() == list(range(10, 21))
    assert ep.labels[3:5].sum() == 0  # gap slices 13, 14 are scored with empty ground truth
    assert [s.z for s in ep.supports] == [11, 16, 19]


def test_build_episode_gmrd_drops_gap_slices():
    L = [10, 11, 12, 15, 16, 17, 18, 19, 20]
    ep = make_episode(L, L, variant="GMRD")
    assert ep.z.tolist() == L and ep.variant == "GMRD"
    assert ep.chunks.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ep.labels.any(axis=(1, 2)).all()


def test_build_episode_single_slice():
    ep = make_episode([10], [10])
    assert ep.z.tolist() == [10] and ep.chunks.tolist() == [0]
    assert [s.z for s in ep.supports] == [10, 10, 10]
    assert [s.chunk for s in ep.supports] == [0, 1, 2]


def test_build_episode_two_slices_keeps_all_three_supports():
    ep = make_episode([10, 11], [10, 11])
    assert ep.chunks.tolist() == [0, 2]
    assert [s.z for s in ep.supports] == [10, 11, 11]
    assert len(ep.supports) == 3 and ep.support_for_chunk(1).z == 11
    assert ep.meta["chunk_sizes"] == (1, 0, 1)


def test_build_episode_label_by_name():
    ep = make_episode(range(5, 15), range(5, 15), label=6, dataset="SABS")
    assert ep.label == 6 and ep.label_name == "LIVER"
    ql, sl = label_volume(range(5, 15), label=6), label_volume(range(5, 15), label=6)
    ep2 = build_episode(
        image_volume(), ql, image_volume(), sl, "liver", case_id=0, support_case_id=6, dataset="SABS"
    )
    assert ep2.label == 6
    with pytest.raises(ValueError, match="pass dataset="):
        build_episode(image_volume(), ql, image_volume(), sl, "liver", case_id=0, support_case_id=6)


def test_build_episode_npart_1_and_5():
    ep1 = make_episode(range(12, 36), range(12, 36), npart=1)
    assert [s.z for s in ep1.supports] == [24] and set(ep1.chunks.tolist()) == {0}
    ep5 = make_episode(range(0, 30), range(0, 30), npart=5)
    assert [s.z for s in ep5.supports] == [3, 9, 15, 21, 27]
    assert np.bincount(ep5.chunks).tolist() == [6, 6, 6, 6, 6]


def test_build_episode_support_selector_replaces_the_protocol_rule():
    calls = []

    def first_last_middle(support_label, label_id, npart):
        calls.append((support_label.shape, label_id, npart))
        zs = np.flatnonzero((support_label == label_id).any(axis=(1, 2)))
        return [int(zs[0]), int(zs[len(zs) // 2]), np.int64(zs[-1])]

    default = make_episode(range(12, 36), range(10, 40))
    ep = make_episode(range(12, 36), range(10, 40), support_selector=first_last_middle)
    assert calls == [((40, 8, 8), 1, 3)]
    assert [s.z for s in default.supports] == [15, 25, 35]  # the protocol rule
    assert [s.z for s in ep.supports] == [10, 25, 39]
    assert [s.chunk for s in ep.supports] == [0, 1, 2]
    assert all(type(s.z) is int for s in ep.supports) and ep.meta["support_z"] == (10, 25, 39)
    sl = label_volume(range(10, 40), other=5)
    for s in ep.supports:
        np.testing.assert_array_equal(s.mask, sl[s.z] == 1)
    # the query side is untouched by the choice of supports
    np.testing.assert_array_equal(ep.z, default.z)
    np.testing.assert_array_equal(ep.chunks, default.chunks)
    np.testing.assert_array_equal(ep.labels, default.labels)
    # None keeps the protocol rule
    none = make_episode(range(12, 36), range(10, 40), support_selector=None)
    assert [s.z for s in none.supports] == [15, 25, 35]
    # npart reaches the selector
    ep5 = make_episode(range(12, 36), range(10, 40), npart=5,
                       support_selector=lambda lab, c, n: [20] * n)
    assert [s.z for s in ep5.supports] == [20] * 5


@pytest.mark.parametrize(
    "chosen, message",
    [
        ([20, 21], "returned 2 slice indices"),
        ([20, 21, 22, 23], "returned 4 slice indices"),
        ([20, 21, 40], "z=40, outside the support scan 8"),
        ([-1, 21, 22], "z=-1, outside"),
        ([20, 5, 22], "z=5, does not contain class 1"),
        ([20, 21.0, 22], "not an integer"),
        ([20, True, 22], "not an integer"),
        (7, "sequence of 3 slice indices"),
        ("abc", "sequence of 3 slice indices"),
    ],
)
def test_build_episode_support_selector_is_validated(chosen, message):
    with pytest.raises(ValueError, match=message):
        make_episode(range(12, 36), range(10, 40), support_selector=lambda lab, c, n: chosen)


def test_build_episode_support_selector_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        make_episode(range(12, 36), range(10, 40), support_selector=[1, 2, 3])


# --------------------------------------------------------------------------- error cases


def test_error_class_absent_from_support_scan():
    ql, sl = label_volume(range(12, 36)), label_volume(range(12, 36), label=2)
    with pytest.raises(ValueError, match="class 1 absent from the support scan 8"):
        build_episode(image_volume(), ql, image_volume(), sl, 1, case_id=1, support_case_id=8)
    with pytest.raises(ValueError, match="class 3 absent from the support scan"):
        support_slices(sl, 3)


def test_error_class_absent_from_query_scan():
    ql, sl = label_volume(range(12, 36), label=2), label_volume(range(12, 36))
    with pytest.raises(ValueError, match="class 1 absent from the query scan 1"):
        build_episode(image_volume(), ql, image_volume(), sl, 1, case_id=1, support_case_id=8)


def test_error_shape_mismatch():
    ql, sl = label_volume(range(12, 36)), label_volume(range(12, 36))
    with pytest.raises(ValueError, match="query_image and query_label differ in shape"):
        build_episode(
            image_volume(depth=39), ql, image_volume(), sl, 1, case_id=1, support_case_id=8
        )
    with pytest.raises(ValueError, match="support_image and support_label differ in shape"):
        build_episode(image_volume(), ql, image_volume(size=9), sl, 1, case_id=1, support_case_id=8)
    small_s = label_volume(range(12, 36), size=6)
    with pytest.raises(ValueError, match="Query and support slices differ in size"):
        build_episode(
            image_volume(), ql, image_volume(size=6), small_s, 1, case_id=1, support_case_id=8
        )
    with pytest.raises(ValueError, match=r"expected a \(Z, H, W\) volume"):
        build_episode(image_volume()[0], ql[0], image_volume(), sl, 1, case_id=1, support_case_id=8)


def test_error_nan_or_inf():
    ql, sl = label_volume(range(12, 36)), label_volume(range(12, 36))
    qi = image_volume()
    qi[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="query_image contains 1 NaN or inf"):
        build_episode(qi, ql, image_volume(), sl, 1, case_id=1, support_case_id=8)
    si = image_volume()
    si[3, 1, 1] = np.inf
    with pytest.raises(ValueError, match="support_image contains"):
        build_episode(image_volume(), ql, si, sl, 1, case_id=1, support_case_id=8)


@pytest.mark.parametrize("npart", [2, 4, 0, -1])
def test_error_even_or_non_positive_npart(npart):
    with pytest.raises(ValueError, match="positive odd integer"):
        make_episode(range(12, 36), range(12, 36), npart=npart)
    with pytest.raises(ValueError, match="positive odd integer"):
        support_slices(label_volume([3]), 1, npart=npart)


def test_error_gmrd_chunks_take_no_z_extent():
    with pytest.raises(ValueError, match="do not use z_min/z_max"):
        chunk_ids([1, 2, 3], variant="GMRD", z_min=0, z_max=5)


def test_chunk_ids_validation():
    with pytest.raises(ValueError, match="strictly ascending"):
        chunk_ids([3, 2, 1])
    with pytest.raises(ValueError, match="non-empty"):
        chunk_ids([])


def test_gmrd_tiny_organs_follow_linspace_literally():
    # GMRD's linspace boundaries put a lone slice in the last chunk, unlike ALP's chunk 0
    assert gmrd_chunk_boundaries(1).tolist() == [0, 0, 0, 1]
    assert chunk_ids([10], variant="GMRD").tolist() == [2]
    assert gmrd_chunk_boundaries(2).tolist() == [0, 0, 1, 2]
    assert chunk_ids([10, 11], variant="GMRD").tolist() == [1, 2]
