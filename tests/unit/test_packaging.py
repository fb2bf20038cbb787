"""The project's own promises about installing and testing it stay true."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lower_bounds() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    bounds = {}
    for line in config["options"]["install_requires"].strip().splitlines():
        name, version = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)>=([0-9.]+)\s*", line).groups()  # type: ignore[union-attr]
        bounds[name.lower()] = version
    return bounds


def _normalise(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def test_every_requirement_has_a_tested_lower_bound_pinned_in_mindeps():
    pins = {}
    for line in (ROOT / "requirements" / "mindeps.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    bounds = _lower_bounds()
    assert set(pins) == set(bounds)
    for name, version in bounds.items():
        assert _normalise(pins[name]) == _normalise(version), name
    for required in ("torch", "transformers", "nnsight", "scikit-learn", "statsmodels", "datasets"):
        assert required in bounds


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block is not None and readme.index("```bash") < readme.index("## ")
    setup_line, test_line = [line for line in block.group(1).splitlines() if line.strip()][:2]
    assert "scripts/setup.sh" in setup_line and "conceptspace" in setup_line
    tox_call = re.search(r"tox -e [\w,]+", test_line)
    assert tox_call is not None
    assert tox_call.group(0) in (ROOT / ".ci" / "run").read_text()
    tox_ini = (ROOT / "tox.ini").read_text()
    for env in tox_call.group(0).split()[-1].split(","):
        assert env in tox_ini


def test_bundled_resources_are_found():
    from conceptspace.resources import datasets_dir, probes_dir

    assert datasets_dir().is_dir() and probes_dir().is_dir()
    assert not list(datasets_dir().rglob("*.py")), "datasets/ must hold data only (it would shadow HF datasets)"


def test_the_wheel_ships_py_typed_so_type_checkers_read_the_hints(tmp_path):
    """PEP 561: without ``py.typed`` in the installed package, mypy and pyright ignore every annotation."""
    import shutil
    import subprocess
    import sys
    import zipfile

    import pytest

    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    assert (ROOT / "conceptspace" / "py.typed").is_file()
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("conceptspace", "datasets", "probes"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("conceptspace-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "conceptspace/py.typed" in names
    assert "conceptspace/stats/_results.py" in names
