"""Exception types: every error a user can cause says what to fix.

They subclass the built-in type a caller would expect (ValueError, FileNotFoundError, ...) so that generic
``except ValueError`` code keeps working, and ``ConceptspaceError`` so callers can catch ours alone.
"""

from __future__ import annotations


class ConceptspaceError(Exception):
    """Base class of every error raised on purpose by conceptspace."""


class ModelNotFoundError(ConceptspaceError, FileNotFoundError):
    """A model alias, folder, file or Hub id that cannot be loaded here."""


class UnsupportedArchitectureError(ConceptspaceError, ValueError):
    """A model whose modules cannot be mapped to the standard activation sites."""


class InvalidInputError(ConceptspaceError, ValueError):
    """Bad texts, layers, positions or spans handed to an extraction or analysis."""


class NotApplicableError(InvalidInputError):
    """A test that this model cannot take (next-token tests on an encoder with no LM head): nothing is wrong with
    the input or the suite, so a run records the analysis as "not applicable" with this reason, not as failed."""


class NonFiniteActivationError(ConceptspaceError, FloatingPointError):
    """NaN or inf found in activations; the values are never cached."""


class CacheError(ConceptspaceError, OSError):
    """The activation cache folder cannot be used (not writable, corrupt manifest, ...)."""


class RemoteError(ConceptspaceError, RuntimeError):
    """A remote (NDIF) request that cannot be made as asked."""


class DatasetError(ConceptspaceError, ValueError):
    """A concept dataset that cannot be loaded or fails validation; the message names the file, column or row."""


class DeviceError(ConceptspaceError, RuntimeError):
    """A ``device`` that this machine does not have (e.g. 'cuda' where torch sees no GPU)."""


class OutputError(ConceptspaceError, OSError):
    """An output folder that cannot be created or written (an existing file, no permission, read-only disk)."""
