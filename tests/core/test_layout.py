"""The house rules that can be read from the code: layering of the core, file sizes, documented fields."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORE = ROOT / "sliderspace_core"
SYSTEMS = ("sliderspace", "elrond", "concepts")
SHARED = ("common", "decompose")


def _py(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: pathlib.Path) -> list[str]:
    """Absolute dotted names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                out.append(".".join([*base, *(node.module.split(".") if node.module else [])]))
            else:
                out.append(node.module or "")
    return out


def test_core_never_imports_comfyui_or_nodes():
    for path in _py(CORE):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in ("comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "latent_preview",
                               "server", "toyworld"), f"{path.relative_to(ROOT)} imports {name}"


def test_core_layers_common_below_decompose_below_systems():
    for path in _py(CORE):
        rel = path.relative_to(CORE).parts
        room = rel[0] if len(rel) > 1 else None
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "sliderspace_core" or len(parts) < 2:
                continue
            target = parts[1]
            if room == "common":
                assert target == "common", f"{path.relative_to(ROOT)} (common) imports {name}"
            elif room == "decompose":
                assert target in SHARED, f"{path.relative_to(ROOT)} (decompose) imports {name}"
            elif room in SYSTEMS:
                assert target in (*SHARED, room), f"{path.relative_to(ROOT)} ({room}) imports {name}"


def test_no_project_file_over_400_lines():
    folders = [CORE, ROOT / "nodes", ROOT / "toyworld", ROOT / "benchmarks", ROOT / "scripts"]
    long = [(str(p.relative_to(ROOT)), n) for f in folders for p in _py(f)
            if (n := len(p.read_text().splitlines())) > 400]
    assert not long, f"files over 400 lines: {long}"


def _is_dataclass(cls: ast.ClassDef) -> bool:
    return any((isinstance(d, ast.Name) and d.id == "dataclass") or
               (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass") for d in cls.decorator_list)


def test_every_public_dataclass_field_has_a_docstring():
    missing = []
    for path in _py(CORE):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not isinstance(cls, ast.ClassDef) or cls.name.startswith("_") or not _is_dataclass(cls):
                continue
            body = cls.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    documented = (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                                  and isinstance(nxt.value.value, str))
                    if not documented:
                        missing.append(f"{path.relative_to(ROOT)}:{cls.name}.{stmt.target.id}")
    assert not missing, f"fields without a docstring: {missing}"
