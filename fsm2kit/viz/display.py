"""How images are shown: radiological orientation with edge letters, and one colour scheme.

Orientation
-----------
Every image figure, panel and widget shows slices in the radiological convention: axial
slices with **anterior up** and the **patient's right on the image's left**; coronal slices
superior up, right on the left; sagittal slices superior up, anterior on the left. Letters on
the panel edges (``A``/``P``, ``R``/``L``, ``S``/``I``) say so.

An array's orientation is given as axis codes in nibabel's convention: the letter names the
direction in which the index **increases** (``("P", "L")``: rows run anterior -> posterior,
columns run right -> left; this is already the radiological view). :func:`display_slice` is
a pure function ``(slice, orientation or affine) -> (display array, edge letters)``; it only
transposes and flips.

Where the orientation comes from:

* NIfTI and DICOM: the affine (``Volume.array_affine``, or ``Volume.array_axcodes``;
  :func:`axcodes_from_affine`). :func:`fsm2kit.io.nifti.load_nifti` arrays are already
  ``("S", "P", "L")``, i.e. displayed unchanged.
* SSL-ALPNet folders and FS-MedSAM2 npz dumps (no trustworthy affine in the dumps):
  :data:`PROTOCOL_AXCODES`, worked out from the preparation steps (PROTOCOL.md section 1;
  ``data/README.md``, "Display orientation"): SABS arrays keep the BTCV direction in
  SimpleITK ``(z, y, x)`` order, rows anterior -> posterior, columns right -> left
  (``("P", "L")``); CHAOST2 arrays have the DICOM rows reversed, rows posterior -> anterior
  (``("A", "L")``: flipped up-down for display).
* Episodes: :func:`episode_axcodes` (``episode.meta["axcodes"]`` if set, else the dataset's
  protocol layout, else unknown: shown as stored, without letters).

Colours
-------
:data:`COLORS`: one colour-blind-safe scheme (Okabe & Ito, 2008) for support, prediction,
ground truth, the chosen pixel, the correction prompts and the memory groups, used by every
figure, panel, chart and widget; :data:`ATTENTION_CMAP` (``cividis``,
perceptually uniform and colour-blind safe) for attention maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = [
    "OKABE_ITO",
    "COLORS",
    "ATTENTION_CMAP",
    "MEMORY_GROUP_COLORS",
    "PROTOCOL_AXCODES",
    "axcodes_from_affine",
    "DisplayOrientation",
    "display_orientation",
    "DisplaySlice",
    "display_slice",
    "episode_axcodes",
]

#: The Okabe-Ito palette (colour-blind safe).
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "grey": "#999999",
}

#: One colour per thing drawn, used by every figure, panel and the widget.
COLORS: dict[str, str] = {
    "support": OKABE_ITO["blue"],  # support mask (filled, outlined)
    "prediction": OKABE_ITO["orange"],  # prediction (filled, outlined)
    "ground_truth": OKABE_ITO["bluish green"],  # ground truth (contour only, drawn over the prediction)
    "pixel": OKABE_ITO["reddish purple"],  # the inspected query pixel
    "memory_mask": OKABE_ITO["sky blue"],  # a memory frame's mask (support mask or earlier prediction)
    "empty": OKABE_ITO["vermillion"],  # "no prediction" text
    "positive_point": OKABE_ITO["sky blue"],  # correction prompts: a positive point
    "negative_point": OKABE_ITO["vermillion"],  # a negative point
    "box": OKABE_ITO["yellow"],  # a box
}

#: Colour map of attention maps (colour-blind safe, perceptually uniform).
ATTENTION_CMAP = "cividis"

#: Memory groups in the inspector's charts: support, query memories, object pointers.
MEMORY_GROUP_COLORS: dict[str, str] = {
    "support memory": COLORS["support"],
    "query memory": COLORS["prediction"],
    "pointers": OKABE_ITO["grey"],
}

#: In-plane axis codes (rows, columns) of the protocol's arrays (SSL-ALPNet folders loaded in
#: SimpleITK order, FS-MedSAM2 npz dumps); see the module docstring and data/README.md.
PROTOCOL_AXCODES: dict[str, tuple[str, str]] = {"SABS": ("P", "L"), "CHAOST2": ("A", "L")}

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_AXIS = {"R": "RL", "L": "RL", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}


def axcodes_from_affine(affine: np.ndarray) -> tuple[str, ...]:
    """Axis codes of an affine's voxel axes (RAS+ world; the closest world axis, as nibabel).

    Parameters
    ----------
    affine : ndarray, (4, 4) or (3, 3)
        Voxel -> world (RAS+, mm). For a ``(Z, H, W)`` array pass ``Volume.array_affine``.

    Returns
    -------
    tuple of str
        One letter per voxel axis, naming the direction of increasing index.
    """
    a = np.asarray(affine, dtype=float)
    if a.shape not in ((4, 4), (3, 3)) or not np.all(np.isfinite(a)):
        raise ValueError(f"affine must be a finite 4x4 (or 3x3) matrix, got shape {a.shape}.")
    m = a[:3, :3]
    out = []
    used: set[int] = set()
    for j in range(3):
        col = m[:, j]
        if not np.any(col):
            raise ValueError(f"affine column {j} is zero: voxel axis {j} has no direction.")
        order = np.argsort(-np.abs(col))
        i = next(int(k) for k in order if int(k) not in used)
        used.add(i)
        out.append(("R", "A", "S")[i] if col[i] > 0 else ("L", "P", "I")[i])
    return tuple(out)


def _codes(orientation) -> tuple[str, str] | None:
    """In-plane (rows, columns) codes from codes (2 or 3, the last two used) or an affine."""
    if orientation is None:
        return None
    if isinstance(orientation, np.ndarray) and orientation.ndim == 2:
        return axcodes_from_affine(orientation)[-2:]  # type: ignore[return-value]
    codes = tuple(str(c).upper() for c in orientation)
    if len(codes) not in (2, 3) or any(c not in _OPPOSITE for c in codes):
        raise ValueError(
            f"orientation must be axis codes like ('P', 'L') or ('S', 'P', 'L') (letters of R/L, A/P, "
            f"S/I) or a 4x4 affine, got {orientation!r}."
        )
    rows, cols = codes[-2:]
    if _AXIS[rows] == _AXIS[cols]:
        raise ValueError(f"orientation {orientation!r}: rows and columns run along the same axis.")
    return rows, cols


@dataclass(frozen=True)
class DisplayOrientation:
    """How a slice with in-plane codes ``(rows, cols)`` becomes the radiological view.

    Attributes
    ----------
    rows, cols : str
        Axis codes of the stored slice (direction of increasing row / column index).
    transpose : bool
        Swap rows and columns first.
    flip_rows, flip_cols : bool
        Then flip up-down / left-right.
    top, bottom, left, right : str
        The edge letters of the displayed slice.
    """

    rows: str
    cols: str
    transpose: bool
    flip_rows: bool
    flip_cols: bool
    top: str
    bottom: str
    left: str
    right: str

    @property
    def letters(self) -> dict[str, str]:
        """``{"top": "A", "bottom": "P", "left": "R", "right": "L"}`` (axial)."""
        return {"top": self.top, "bottom": self.bottom, "left": self.left, "right": self.right}

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The slice (``(H, W)`` or ``(H, W, C)``) as displayed (a view, no copy)."""
        a = np.asarray(array)
        if a.ndim not in (2, 3):
            raise ValueError(f"display expects a 2D slice (H, W) or an (H, W, C) image, got shape {a.shape}.")
        if self.transpose:
            a = np.swapaxes(a, 0, 1)
        if self.flip_rows:
            a = a[::-1]
        if self.flip_cols:
            a = a[:, ::-1]
        return a

    def point(self, y: float, x: float, shape: tuple[int, int]) -> tuple[float, float]:
        """Where the stored pixel ``(y, x)`` of a slice of ``shape`` lands in the display."""
        h, w = shape
        if self.transpose:
            y, x, h, w = x, y, w, h
        if self.flip_rows:
            y = h - 1 - y
        if self.flip_cols:
            x = w - 1 - x
        return y, x

    def stored_point(self, y: float, x: float, shape: tuple[int, int]) -> tuple[float, float]:
        """The stored pixel shown at display position ``(y, x)`` (inverse of :meth:`point`)."""
        h, w = shape
        dh, dw = (w, h) if self.transpose else (h, w)
        if self.flip_rows:
            y = dh - 1 - y
        if self.flip_cols:
            x = dw - 1 - x
        if self.transpose:
            y, x = x, y
        return y, x


def display_orientation(orientation) -> DisplayOrientation | None:
    """The radiological display of a slice whose (rows, cols) run along ``orientation``.

    Parameters
    ----------
    orientation : (rows, cols) or (Z, rows, cols) axis codes, a 4x4 affine of the ``(Z, H, W)``
        array, or None (unknown: returns None, the slice is shown as stored).

    Returns
    -------
    DisplayOrientation or None
    """
    codes = _codes(orientation)
    if codes is None:
        return None
    rows, cols = codes
    axes = {_AXIS[rows], _AXIS[cols]}
    vertical = "SI" if "SI" in axes else "AP"  # axial: A/P up-down; coronal/sagittal: S/I
    top = "S" if vertical == "SI" else "A"
    horizontal = (axes - {vertical}).pop()
    left = "R" if horizontal == "RL" else "A"  # sagittal: anterior on the left
    transpose = _AXIS[rows] != vertical
    if transpose:
        rows, cols = cols, rows
    return DisplayOrientation(
        rows=codes[0], cols=codes[1], transpose=transpose,
        flip_rows=rows == top,  # index increasing towards the top letter: row 0 would be at the bottom
        flip_cols=cols == left,
        top=top, bottom=_OPPOSITE[top], left=left, right=_OPPOSITE[left],
    )


@dataclass(frozen=True)
class DisplaySlice:
    """A slice as displayed and its edge letters (None: orientation unknown)."""

    array: np.ndarray
    letters: dict[str, str] | None
    orientation: DisplayOrientation | None = None

    def __repr__(self) -> str:
        lt = "unknown orientation" if self.letters is None else "{top}/{bottom} {left}/{right}".format(**self.letters)
        return f"DisplaySlice({self.array.shape}, {lt})"


def display_slice(image: np.ndarray, orientation=None) -> DisplaySlice:
    """A slice in the radiological view, with the letters of its edges.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
    orientation : axis codes, affine or None
        See :func:`display_orientation`.

    Returns
    -------
    DisplaySlice
        ``array`` (transposed / flipped view) and ``letters`` (``top``, ``bottom``, ``left``,
        ``right``), None when the orientation is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.zeros((4, 4)); s[3, 0] = 1          # CHAOST2 rows run posterior -> anterior
    >>> d = display_slice(s, ("A", "L"))           # anterior-right blob ...
    >>> d.array[0, 0], d.letters["top"], d.letters["left"]   # ... shown top-left
    (1.0, 'A', 'R')
    """
    o = display_orientation(orientation)
    if o is None:
        return DisplaySlice(np.asarray(image), None, None)
    return DisplaySlice(o.apply(image), o.letters, o)


def episode_axcodes(episode) -> tuple[str, str] | None:
    """In-plane axis codes of an episode's slices: ``meta["axcodes"]``, else its dataset's layout.

    Returns None when neither is known (shown as stored).
    """
    meta: Mapping = getattr(episode, "meta", None) or {}
    if meta.get("axcodes") is not None:
        return _codes(meta["axcodes"])
    return PROTOCOL_AXCODES.get(str(getattr(episode, "dataset", "") or "").upper())
