"""Where the bundled concept data and probe suites live, in a checkout and in an installed wheel.

In the repository they sit at the top level (``datasets/``, ``probes/``); a wheel maps them into the package as
``conceptspace/bundled_datasets`` and ``conceptspace/bundled_probes`` (see setup.cfg). Code must never assume one
layout, so every lookup goes through these two functions.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"bundled resource folder not found (tried {tried}); reinstall conceptspace")


def datasets_dir() -> Path:
    """Folder holding the bundled concept datasets (one sub-folder per dataset)."""
    return _first_existing(_PACKAGE_DIR / "bundled_datasets", _PACKAGE_DIR.parent / "datasets")


def probes_dir() -> Path:
    """Folder holding the bundled probe suites (``*.toml``)."""
    return _first_existing(_PACKAGE_DIR / "bundled_probes", _PACKAGE_DIR.parent / "probes")
