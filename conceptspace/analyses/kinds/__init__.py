"""The analysis kinds, one module each: every module here registers one :class:`~conceptspace.analyses.Analysis`.

Why a folder of its own: adding a kind is adding one module here (and its test); the registry discovers the
modules of this package, so no list elsewhere has to be edited. See docs/ARCHITECTURE.md for a worked example.
"""

from __future__ import annotations

__all__: list[str] = []
