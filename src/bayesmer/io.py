"""Save a fit to a file and load it back as a fit.

The file is the fit's DataTree (NetCDF or Zarr, ArviZ 1's schema), with what
rebuilds the rest in its root attributes: the formula, the priors, the
settings and the package version. ``constant_data`` holds the columns the
formula reads, so :func:`bayesmer.load` rebuilds the design, refits REML
(exact and deterministic, milliseconds) and rebuilds the PyMC model; the draws
are the file's. Any ArviZ reader still opens the file as plain ArviZ data.
This module only writes and reads: it imports no estimator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import xarray as xr

from .errors import LoadError

__all__ = ["save", "read", "FORMATS"]

FORMATS = {".nc": "netcdf", ".zarr": "zarr"}
_ATTR = "bayesmer"  # root attribute holding the JSON that rebuilds the fit


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LoadError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    return fmt


def save(fit, path) -> Path:
    """Write ``fit`` (a :class:`BayesFit`) to ``path``: ``.nc`` (NetCDF, h5netcdf) or ``.zarr``.

    Returns
    -------
    Path
    """
    from . import __version__  # set once the package's __init__ has run

    path = Path(path)
    fmt = _format(path)
    d = fit.design
    gd = getattr(fit, "glmm", None)
    meta = {
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
    if fmt == "netcdf":
        tree.to_netcdf(path, engine="h5netcdf")
    else:
        tree.to_zarr(path, mode="w")
    return path


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
            raise LoadError(f"constant_data lacks column {col!r} that the formula reads")
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
    except Exception as exc:  # the backends raise many types
        raise LoadError(f"{path}: cannot read as {fmt}: {exc}") from exc
    if _ATTR not in tree.attrs:
        raise LoadError(f"{path}: not a bayesmer fit (no {_ATTR!r} attribute at the root: plain ArviZ data)")
    meta = json.loads(tree.attrs[_ATTR])
    for group in ("posterior",) + (() if "source" in meta else ("constant_data",)):
        if group not in tree.children:
            raise LoadError(f"{path}: not a bayesmer fit (no {group} group)")
    # a fit of Parquet files not in memory: the files are the data (bayesmer.load reads them again)
    frame = meta["source"] if "source" in meta else _frame(tree["constant_data"].to_dataset(), meta["columns"])
    tree.attrs = {k: v for k, v in tree.attrs.items() if k != _ATTR}
    return tree, meta, frame
