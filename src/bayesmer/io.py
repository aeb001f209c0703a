"""Save a fit to a file and load it back as a fit.

The file is the fit's DataTree (NetCDF or Zarr, ArviZ 1's schema), with what
rebuilds the rest in its root attributes: the formula, the priors, the
settings and the package version. ``constant_data`` holds the columns the
formula reads, so :func:`bayesmer.load` rebuilds the design, refits REML
(exact and deterministic, milliseconds) and rebuilds the PyMC model; the draws
are the file's. Any ArviZ reader still opens the file as plain ArviZ data.
This module only writes and reads: it imports no estimator.

Writes are atomic (:func:`staged`): the file is written beside its target
under a temporary name and renamed over it only once complete, so a full disk
or an interrupt leaves the previous file as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
import warnings
from pathlib import Path

import pandas as pd
import xarray as xr

from .errors import LoadError, SaveError

__all__ = ["save", "read", "staged", "FORMATS", "FORMAT"]

FORMATS = {".nc": "netcdf", ".zarr": "zarr"}
_ATTR = "bayesmer"  # root attribute holding the JSON that rebuilds the fit
#: the layout of the root attribute's JSON; raised when what it holds or means changes
FORMAT = 1


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LoadError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    return fmt


def save(fit, path) -> Path:
    """Write ``fit`` (a :class:`BayesFit`) to ``path``: ``.nc`` (NetCDF, h5netcdf) or ``.zarr``.

    Atomic: written beside ``path`` under a temporary name, then renamed
    over it (:func:`staged`).

    Returns
    -------
    Path

    Raises
    ------
    SaveError
        The file could not be written (naming it); a previous file at
        ``path`` is left unchanged.
    """
    from . import __version__  # set once the package's __init__ has run

    path = Path(path)
    fmt = _format(path)
    d = fit.design
    gd = getattr(fit, "glmm", None)
    meta = {
        "format": FORMAT,
        "version": __version__,
        "formula": str(d.formula) if gd is None else gd.formula,
        "priors": fit.priors.to_dict(),
        "settings": dict(fit.settings),
        "strategy": fit.strategy,
        "timings": dict(fit.timings),
        "columns": _columns(d, gd),
    }
    if gd is not None:
        meta.update(weights=gd.weights_spec, offset=gd.offset_spec)
    elif d.frame is not None:
        pass
    elif d.source[0].kind == "parquet":  # not in memory: load() reads the files again
        meta["source"] = [str(Path(f).resolve()) for f in d.source[0].obj]
    else:
        raise LoadError(f"a fit of {d.source[0].label} cannot be saved with its data (they are not in memory): "
                        "fit the Parquet files, or save fit.idata itself")
    tree = fit.idata.copy()
    tree.attrs = {**fit.idata.attrs, _ATTR: json.dumps(meta)}
    with staged(path) as tmp:
        if fmt == "netcdf":
            # HDF5 builds the file in memory and Python writes it: HDF5 writing to disk
            # itself met a full disk by truncating the file and crashing on close
            data = tree.to_netcdf(None, engine="h5netcdf")
            try:
                with open(tmp, "xb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            finally:
                # a view of xarray's BytesIO: one kept alive by a traceback crashed the interpreter's exit
                data.release()
        else:
            tree.to_zarr(tmp, mode="w-")
    return path


@contextmanager
def staged(path):
    """A temporary path beside ``path`` to write to, renamed over ``path`` once the block ends.

    A file replaces a file in one rename (:func:`os.replace`); a folder
    (a Zarr store, an output folder) replaces one by two renames, the old
    one kept aside until the new one is in place. On any failure the
    temporary path is removed and ``path`` is left as it was.

    Raises
    ------
    SaveError
        Naming ``path``: its folder is missing or not writable, the disk is
        full, ... (a KeyboardInterrupt passes through, after the clean-up).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a folder"
        raise SaveError(f"{path}: not written: its folder {parent} {what}")
    tmp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        _swap(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception) and not isinstance(exc, SaveError):
            previous = " (the previous one is unchanged)" if path.exists() else ""
            raise SaveError(f"{path}: not written{previous}: {_reason(exc)}") from exc
        raise


def _swap(tmp: Path, path: Path) -> None:
    if path.exists() and tmp.is_dir() != path.is_dir():
        # never a folder swapped away for a file, nor the other way round
        raise SaveError(f"{path}: not written: it exists and is a {'folder' if path.is_dir() else 'file'}")
    if not tmp.is_dir():
        os.replace(tmp, path)
        return
    if not path.exists() and not path.is_symlink():
        os.rename(tmp, path)
        return
    aside = path.parent / f".{path.name}.{secrets.token_hex(4)}.old"
    os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside, path)
        raise
    _remove(aside)


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError:  # clean-up is best effort: the error being reported matters more
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _columns(design, glmm) -> list[str]:
    """The columns the fit reads: a GLMM's raw columns, the design's, or (not in memory) the source plan's."""
    if glmm is not None:
        return [str(c) for c in glmm.frame.columns]
    if design.frame is not None:
        return [str(c) for c in design.frame.columns]
    return list(design.source[1].used)


def _frame(cd: xr.Dataset, columns: list[str]) -> pd.DataFrame:
    out = {}
    for col in columns:
        if col not in cd:
            raise LoadError(f"constant_data lacks column {col!r} that the formula reads")  # read() names the file
        var = cd[col]
        values = var.to_numpy()
        if "categories" in var.attrs:
            cats = json.loads(var.attrs["categories"])
            out[col] = pd.Categorical(values.astype(str), categories=cats, ordered=bool(var.attrs.get("ordered", 0)))
        elif values.dtype.kind in "SUO":
            out[col] = values.astype(str)
        else:
            out[col] = values
    return pd.DataFrame(out)


def read(path) -> tuple[xr.DataTree, dict, pd.DataFrame]:
    """Read a file written by :func:`save`: the tree (root attribute removed), the stored metadata and the data columns.

    :func:`bayesmer.load` rebuilds the fit from these.

    Raises
    ------
    LoadError
        A missing file, an unknown file type, or a file that is not a bayesmer fit.
    """
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise LoadError(f"{path}: no such file")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf" if fmt == "netcdf" else "zarr")
        tree = tree.load()
        tree.close()  # every value is in memory: the file is not held open (nor locked) after reading
    except Exception as exc:  # the backends raise many types
        raise LoadError(f"{path}: cannot read as {fmt}: {exc}") from exc
    if _ATTR not in tree.attrs:
        raise LoadError(f"{path}: not a bayesmer fit (no {_ATTR!r} attribute at the root: plain ArviZ data)")
    meta = _metadata(path, tree.attrs[_ATTR])
    for group in ("posterior",) + (() if "source" in meta else ("constant_data",)):
        if group not in tree.children:
            raise LoadError(f"{path}: not a bayesmer fit (no {group} group)")
    # a fit of Parquet files not in memory: the files are the data (bayesmer.load reads them again)
    try:
        frame = meta["source"] if "source" in meta else _frame(tree["constant_data"].to_dataset(), meta["columns"])
    except (TypeError, ValueError) as exc:  # a column's stored categories that are not a JSON list, say
        raise LoadError(f"{path}: cannot read the stored data columns: {exc}") from None
    tree.attrs = {k: v for k, v in tree.attrs.items() if k != _ATTR}
    return tree, meta, frame


# What the metadata holds, by key: (its JSON type, what it is, whether required).
# A saved fit may come from anyone: every value is checked to be data of the
# expected shape here, and bayesmer.load re-parses the strings (formula, weights,
# offset, priors, settings) with the parsers a new fit uses; nothing is evaluated.
_KEYS = {
    "version": (str, "a version string", True),
    "formula": (str, "a formula string", True),
    "priors": (dict, "a mapping of prior names to prior strings", True),
    "settings": (dict, "a mapping of settings", True),
    "strategy": (str, "a strategy name", True),
    "timings": (dict, "a mapping of timings", False),
    "columns": (list, "a list of column names", False),
    "source": (list, "a list of Parquet file paths", False),
    "weights": ((str, type(None)), "a column name or R expression", False),
    "offset": ((str, type(None)), "a column name or R expression", False),
}


def _metadata(path: Path, text) -> dict:
    """The root attribute's JSON, its format and the types of its values checked."""
    from . import __version__

    try:
        meta = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise LoadError(f"{path}: the {_ATTR!r} attribute is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise LoadError(f"{path}: the {_ATTR!r} attribute is not a JSON object")
    for key, (kind, what, required) in _KEYS.items():
        if key not in meta:
            if required:
                raise LoadError(f"{path}: not a bayesmer fit (its metadata lacks {key!r})")
            continue
        if not isinstance(meta[key], kind):
            raise LoadError(f"{path}: the stored {key!r} is not {what}: {str(meta[key])[:80]!r}")
    for key in ("priors", "timings"):
        for k, v in meta.get(key, {}).items():
            ok = isinstance(v, str) if key == "priors" else isinstance(v, (int, float)) and not isinstance(v, bool)
            if not ok:
                what = "a prior string" if key == "priors" else "a number"
                raise LoadError(f"{path}: the stored {key} entry {k!r} is not {what}: {str(v)[:80]!r}")
    for k, v in meta["settings"].items():
        if not isinstance(v, (str, int, float, bool, type(None))):
            raise LoadError(f"{path}: the stored setting {k!r} is not a single value: {str(v)[:80]!r}")
    for key in ("columns", "source"):
        if not all(isinstance(c, str) for c in meta.get(key, [])):
            raise LoadError(f"{path}: the stored {key!r} is not {_KEYS[key][1]}")
    if "columns" not in meta and "source" not in meta:
        raise LoadError(f"{path}: not a bayesmer fit (its metadata names neither columns nor source)")
    saved = meta["version"]
    fmt = meta.get("format")
    if fmt is None:
        warnings.warn(f"{path}: written by bayesmer {saved}, before saved fits had a format number; "
                      f"read as format 1 by bayesmer {__version__}", UserWarning, stacklevel=3)
    elif not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise LoadError(f"{path}: the stored format {fmt!r} is not a format number")
    elif fmt > FORMAT:
        raise LoadError(f"{path}: saved in format {fmt} by bayesmer {saved}; this bayesmer ({__version__}) "
                        f"reads format {FORMAT} and older: upgrade bayesmer to load it")
    elif saved != __version__:
        warnings.warn(f"{path}: written by bayesmer {saved} (format {fmt}); read by bayesmer {__version__}",
                      UserWarning, stacklevel=3)
    return meta
