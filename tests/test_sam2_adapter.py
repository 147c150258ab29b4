"""SAM2's private API is reached through one module only: ``fsm2kit.model.sam2_adapter`` (issue 20).

The names SAM2 keeps private (a leading underscore, not a dunder) are gathered by introspection:
the methods and class attributes of every sam2 class of a built model (``SAM2VideoPredictor``
and its ``SAM2Base``, the image encoder, memory attention, memory encoder, mask decoder, prompt
encoder, their layers) and of every class in the sam2 modules those classes and fsm2kit import,
those modules' private functions, the private instance attributes of the built model's sam2
submodules (torch's own ``nn.Module`` internals left out), and the private names sam2's own
code imports from sam2 (``from sam2 import _C``: the CUDA extension, absent on CPU).

Every fsm2kit module except the adapter (and ``fsm2kit/testing``, whose reference drives sam2's
own predictor) is scanned with ``ast`` for attribute accesses of those names, ``getattr``-like
calls naming them, imports of private sam2 names or modules, and dotted ``"sam2._x"`` strings
(``sys.modules`` patches). A name that fsm2kit also defines itself (a method or an attribute set
on ``self``) is allowed on ``self``/``cls`` only: there it is fsm2kit's own. No such clash exists
today; the rule keeps the test precise if one appears.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch

PKG = Path(__file__).resolve().parents[1] / "fsm2kit"
ADAPTER = PKG / "model" / "sam2_adapter.py"
EXEMPT = (ADAPTER, PKG / "testing")
ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}
SAM2_PATH = re.compile(r"sam2(\.\w+)+")
#: sam2 modules scanned whatever the model is made of: the predictor, its base, the builder
#: and the post-processing (hole filling) fsm2kit mirrors
BASE_MODULES = ("sam2", "sam2.build_sam", "sam2.sam2_video_predictor", "sam2.modeling.sam2_base", "sam2.utils.misc")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources(exempt: bool = True):
    for path in sorted(PKG.rglob("*.py")):
        if exempt and any(path == e or e in path.parents for e in EXEMPT):
            continue
        yield path, ast.parse(path.read_text(), filename=str(path))


def _fsm2kit_sam2_imports() -> set[str]:
    """The sam2 modules fsm2kit imports (anywhere in the package)."""
    found = set()
    for _, tree in _sources(exempt=False):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "sam2"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sam2":
                found.add(node.module)
    return {m for m in found if not any(_private(p) for p in m.split("."))}


def sam2_private_names(module: torch.nn.Module) -> dict[str, str]:
    """SAM2's private names -> where sam2 defines them, from a built model and the sam2 modules."""
    import sam2

    names: dict[str, str] = {}
    torch_attrs = set(vars(torch.nn.Module()))
    modules = set(BASE_MODULES) | _fsm2kit_sam2_imports()
    for sub in module.modules():
        classes = [c for c in type(sub).__mro__ if c.__module__.split(".")[0] == "sam2"]
        modules |= {c.__module__ for c in classes}
        if classes:  # instance attributes set by sam2's __init__
            for k in vars(sub):
                if _private(k) and k not in torch_attrs:
                    names.setdefault(k, f"{type(sub).__name__} instance")
    for name in sorted(modules):
        mod = importlib.import_module(name)
        for k, v in vars(mod).items():
            if _private(k):
                names.setdefault(k, name)
            if inspect.isclass(v) and v.__module__ == name:
                for c in v.__mro__:
                    if c.__module__.split(".")[0] == "sam2":
                        for kk in vars(c):
                            if _private(kk):
                                names.setdefault(kk, f"{c.__module__}.{c.__name__}")
    for path in Path(sam2.__file__).parent.rglob("*.py"):  # private names sam2 imports from sam2
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sam2":
                for a in node.names:
                    if _private(a.name):
                        names.setdefault(a.name, f"{node.module}.{a.name}")
    return names


def fsm2kit_private_names() -> set[str]:
    """Private names fsm2kit defines on its own objects: methods, class attributes, ``self._x = ...``."""
    own = set()
    for _, tree in _sources(exempt=False):
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(item.name):
                        own.add(item.name)
                    elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                        targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                        own |= {t.id for t in targets if isinstance(t, ast.Name) and _private(t.id)}
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                own.add(node.attr)
    return own


def violations(tree: ast.AST, sam2_names, own_names, where: str = "") -> list[str]:
    """Uses of SAM2's private API in ``tree`` (one line each)."""
    bad = []

    def flag(node, what):
        bad.append(f"{where}:{node.lineno}: {what}")

    def sam2s(name: str, receiver: ast.AST) -> bool:
        if name not in sam2_names:
            return False
        own_receiver = isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")
        return not (name in own_names and own_receiver)  # a clash: fsm2kit's own on self/cls

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and sam2s(node.attr, node.value):
            flag(node, f".{node.attr} (sam2's {sam2_names[node.attr]})")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTR_CALLS
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and sam2s(node.args[1].value, node.args[0])):
            flag(node, f"{node.func.id}(..., {node.args[1].value!r}) (sam2's {sam2_names[node.args[1].value]})")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "sam2" and any(_private(p) for p in a.name.split(".")):
                    flag(node, f"import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sam2":
            private = [a.name for a in node.names if _private(a.name)]
            if private or any(_private(p) for p in node.module.split(".")):
                flag(node, f"from {node.module} import {[a.name for a in node.names]}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and SAM2_PATH.fullmatch(node.value)
              and any(_private(p) for p in node.value.split("."))):
            flag(node, f"the string {node.value!r} (a sam2 private module)")
    return sorted(bad, key=lambda b: int(b.split(":")[1]))


@pytest.fixture(scope="module")
def sam2_names(tiny128):
    return sam2_private_names(tiny128.module)


def test_sam2_private_names_are_found(sam2_names):
    for name in ("_forward_sam_heads", "_use_mask_as_output", "_use_multimask", "_encode_new_memory",
                 "_prepare_memory_conditioned_features", "_get_image_feature", "_separate_heads",
                 "_recombine_heads", "_C"):
        assert name in sam2_names, name
    assert not {"_parameters", "_modules", "_forward_hooks", "_orig_mod"} & set(sam2_names)  # torch's, not sam2's
    assert all(_private(n) for n in sam2_names)


def test_only_the_adapter_touches_sam2_private_api(sam2_names):
    own = fsm2kit_private_names()
    bad = []
    for path, tree in _sources():
        bad += violations(tree, sam2_names, own, str(path.relative_to(PKG.parent)))
    assert not bad, ("SAM2-private API used outside fsm2kit/model/sam2_adapter.py; add a function there and "
                     "call it:\n" + "\n".join(bad))


def test_adapter_wraps_existing_sam2_names(sam2_names):
    """Every private name the adapter uses is sam2's (a renamed sam2 method fails here)."""
    used = {n.attr for n in ast.walk(ast.parse(ADAPTER.read_text())) if isinstance(n, ast.Attribute) and _private(n.attr)}
    assert used, "the adapter wraps nothing?"
    assert used <= set(sam2_names), sorted(used - set(sam2_names))


def test_scanner_flags_and_spares():
    names = {"_forward_sam_heads": "SAM2Base", "_C": "sam2._C", "_hook": "a clash"}
    own = {"_hook"}
    code = """
import sam2._C
from sam2.utils.misc import _load_img_as_tensor
from sam2 import _C
x = m._forward_sam_heads(f)
y = getattr(m, "_forward_sam_heads")
sys.modules["sam2._C"] = mod
sam2._C = mod
m._hook(1)
"""
    bad = violations(ast.parse(code), names, own)
    assert sorted(int(b.split(":")[1]) for b in bad) == [2, 3, 4, 5, 6, 7, 8, 9], bad
    fine = """
self._hook(1)
cls._hook
self._other = 1
lm._keys
getattr(enc, "_orig_mod", enc)
doc = "see ``sam2._C``"
from sam2.modeling.sam2_utils import get_1d_sine_pe
"""
    assert violations(ast.parse(fine), names, own) == []


def test_adapter_functions_forward_unchanged(tiny128):
    """The wrappers return exactly what sam2's private methods return."""
    from fsm2kit.model import sam2_adapter as ad

    m = tiny128.module
    g = torch.Generator().manual_seed(0)
    pix = torch.randn(2, m.hidden_dim, 8, 8, generator=g)
    high = [torch.randn(2, 32, 32, 32, generator=g), torch.randn(2, 64, 16, 16, generator=g)]
    pts = {"point_coords": torch.tensor([[[40.0, 60.0]], [[70.0, 20.0]]]), "point_labels": torch.ones(2, 1, dtype=torch.int32)}
    with torch.inference_mode():
        assert ad.use_multimask(m, False, pts) == m._use_multimask(False, pts)
        got = ad.forward_heads(m, backbone_features=pix, point_inputs=pts, high_res_features=high)
        ref = m._forward_sam_heads(backbone_features=pix, point_inputs=pts, high_res_features=high)
        assert isinstance(got, ad.HeadOutputs) and len(got) == len(ref) == 7
        assert all(torch.equal(a, b) for a, b in zip(got, ref))
        mask = torch.zeros(2, 1, 128, 128)
        mask[:, :, 30:90, 40:100] = 1
        assert all(torch.equal(a, b) for a, b in zip(ad.use_mask_as_output(m, pix, high, mask),
                                                     m._use_mask_as_output(pix, high, mask)))
        vf = [torch.randn(32 * 32, 2, 32, generator=g), torch.randn(16 * 16, 2, 64, generator=g),
              torch.randn(8 * 8, 2, m.hidden_dim, generator=g)]
        sizes = [(32, 32), (16, 16), (8, 8)]
        hr = torch.randn(2, 1, 128, 128, generator=g)
        score = torch.randn(2, 1, generator=g)
        feats, pos = ad.encode_memory(m, vf, sizes, hr, score, is_mask_from_pts=True)
        feats_ref, pos_ref = m._encode_new_memory(vf, sizes, hr, score, is_mask_from_pts=True)
        assert torch.equal(feats, feats_ref) and all(torch.equal(a, b) for a, b in zip(pos, pos_ref))
        attn = m.memory_attention.layers[0].cross_attn_image
        x = torch.randn(2, 5, attn.internal_dim, generator=g)
        heads = ad.separate_heads(attn, x)
        assert torch.equal(heads, attn._separate_heads(x, attn.num_heads))
        assert torch.equal(ad.recombine_heads(attn, heads), x)
