"""Foundation helpers every layer may use: input checks, atomic file writes, Markdown and HTML escaping, renamed
keywords.

Why a package of their own below everything else: each is a small job that several layers need (the cache and
the weights cache both publish files atomically; the CLI, the suite parser and the report all escape user text),
and none of them knows about models, concepts or statistics, so they sit under the data flow, not in it.
"""

from __future__ import annotations

from conceptspace.utils.atomic import atomic_write_bytes, atomic_write_json
from conceptspace.utils.deprecation import renamed_keywords

__all__ = ["atomic_write_bytes", "atomic_write_json", "renamed_keywords"]
