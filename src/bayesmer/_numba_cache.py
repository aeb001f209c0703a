"""A writable place for numba's cache of bayesmer's compiled kernels, found before they are defined.

The kernels are ``cache=True`` (:mod:`bayesmer.engine._kernel`): numba writes
their machine code to ``NUMBA_CACHE_DIR``, else the package's ``__pycache__``,
else the user's cache folder, and refuses to define a cached function when
none is writable (a read-only install in a container with no home), which
made ``import bayesmer`` die in numba's traceback. Then this module gives
numba one more place, a temporary folder for this session (the kernels are
compiled again by each new session, 1-3 minutes), and says so in one warning.
"""

from __future__ import annotations

import os
import tempfile
import warnings

__all__ = ["ensure_cache"]


def _probe():  # pragma: no cover - never called: its code object stands in for a kernel's
    pass


def ensure_cache(source: str) -> str | None:
    """Make sure numba can cache the functions of ``source`` (a module's file).

    Returns
    -------
    str or None
        The session's temporary folder when no writable location was found
        (after a one-line warning naming the places tried and
        ``NUMBA_CACHE_DIR``); None when numba has one of its own.

    Raises
    ------
    ImportError
        When not even a temporary folder can be made, in one line that says to
        set ``NUMBA_CACHE_DIR`` to a writable folder.
    """
    from numba.core import caching, config

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    for cls in impl._locator_classes:
        try:
            if cls.from_function(_probe, source) is not None:
                return None
        except Exception:  # a locator of a kind that does not apply here
            continue
    tried = [f"NUMBA_CACHE_DIR={config.CACHE_DIR!r}" if config.CACHE_DIR else "NUMBA_CACHE_DIR (not set)",
             os.path.join(os.path.dirname(source), "__pycache__"), "the user's cache folder"]
    try:
        folder = tempfile.mkdtemp(prefix="bayesmer-numba-")
    except OSError as exc:
        raise ImportError(
            f"bayesmer: no writable folder for numba's cache of compiled code (tried {', '.join(tried)}, and a "
            f"temporary folder: {exc}); set NUMBA_CACHE_DIR to a writable folder"
        ) from None

    class SessionCacheLocator(caching.UserProvidedCacheLocator):
        """numba's user-provided locator, pointed at this session's temporary folder."""

        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = os.path.join(folder, self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)

    impl._locator_classes = [*impl._locator_classes, SessionCacheLocator]
    warnings.warn(
        f"bayesmer: no writable folder for numba's cache of compiled code (tried {', '.join(tried)}); "
        f"compiling into {folder} for this session only (1-3 minutes in each new session): set "
        "NUMBA_CACHE_DIR to a writable folder to keep it",
        RuntimeWarning,
        stacklevel=2,
    )
    return folder
