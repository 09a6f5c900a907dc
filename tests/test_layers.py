"""No import runs back up: every module of `src/convbench` imports only from its own floor or the floors below,
as the floors table of docs/architecture.md states them."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "src"
FLOORS_TABLE = ROOT / "docs" / "architecture.md"
FLOOR_ROW = re.compile(r"^\| (\d+) [^|]*\| ([^|]*) \|")


def floors_of_prefixes(markdown: str) -> dict[str, int]:
    """Module prefix -> floor number, from the `| floor | modules | ... |` rows of the table."""
    floors = {}
    for line in markdown.splitlines():
        if match := FLOOR_ROW.match(line):
            for prefix in re.findall(r"`([\w.]+)`", match.group(2)):
                floors[prefix] = int(match.group(1))
    return floors


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCES).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str) -> set[str]:
    """The convbench modules `path` imports, at the top or inside functions, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {name for name in found if name == "convbench" or name.startswith("convbench.")}


def floor_of(module: str, floors: dict[str, int]) -> int | None:
    """The floor of the longest prefix of `module` in the table, if any."""
    matches = [prefix for prefix in floors if module == prefix or module.startswith(f"{prefix}.")]
    return floors[max(matches, key=len)] if matches else None


def every_module() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SOURCES / "convbench").rglob("*.py"))}


def upward_imports(floors: dict[str, int]) -> list[str]:
    modules = every_module()
    found = []
    for module, path in modules.items():
        own = floor_of(module, floors)
        for target in sorted(imported_modules(path, module)):
            if target not in modules and target.rpartition(".")[0] in modules:
                continue  # `from convbench.x import name`: the name is not a module; its module counts
            target_floor = floor_of(target, floors)
            if own is not None and target_floor is not None and target_floor > own:
                found.append(f"{module} (floor {own}) imports {target} (floor {target_floor})")
    return found


@pytest.fixture(scope="module")
def floors() -> dict[str, int]:
    return floors_of_prefixes(FLOORS_TABLE.read_text())


def test_every_module_has_a_floor_in_the_table(floors):
    assert floors, f"no floors table found in {FLOORS_TABLE}"
    assert [module for module in every_module() if floor_of(module, floors) is None] == []


def test_no_module_imports_from_a_floor_above_its_own(floors):
    assert upward_imports(floors) == []


def test_an_upward_import_is_found_even_inside_a_function(tmp_path, monkeypatch):
    package = tmp_path / "convbench"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "serving.py").write_text("from convbench.data import parser\n")
    (package / "data" / "parser.py").write_text("def decode():\n    from ..serving import decode_image\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", tmp_path)
    table = "| 2 data | `convbench.data` | |\n| 5 services | `convbench.serving` | |\n| 1 foundation | `convbench` | |"
    assert upward_imports(floors_of_prefixes(table)) == [
        "convbench.data.parser (floor 2) imports convbench.serving (floor 5)"
    ]
