"""The ``bayesmer`` command.

``bayesmer run MODEL.toml``
    Fit a model file (see :mod:`bayesmer.modelfile`): print the REML and
    posterior table side by side and write the posterior (NetCDF), the table
    (CSV) and a short report with plots to ``out/<model name>/``.
``bayesmer fit FORMULA DATA``
    The same for a formula and a CSV file, priors given by ``--prior``.
``bayesmer reml FORMULA DATA``
    The exact REML (or ``--ml``) fit, printed as lme4's summary.
``bayesmer datasets``
    The bundled data sets, which DATA may also name.

Errors end the command with a non-zero status and one line on stderr naming
the file, key or flag at fault; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

# light imports only: `bayesmer --help` and a usage error must not wait for
# numpy, pandas, PyMC or numba (seconds on a loaded machine); the commands
# import what they use
from . import settings as st
from .errors import BayesmerError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main", "CommandError"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPT = 130  # 128 + SIGINT, as shells report a Ctrl-C


class CommandError(BayesmerError):
    """An error to report in one line, without a traceback."""


# ---- arguments ------------------------------------------------------------


def _setting(name: str):
    """An argparse type checking setting ``name`` with :func:`bayesmer.settings.check`.

    The message is the one :func:`bayesmer.fit` and model files give, so a
    value is refused here exactly when fit() would refuse it.
    """
    numeric = name in ("draws", "tune", "chains", "seed", "target_accept")

    def parse(text: str):
        value = text
        if numeric:
            try:
                value = float(text) if name == "target_accept" else int(text)
            except ValueError:
                kind = "a number" if name == "target_accept" else "an integer"
                raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {text!r}") from None
        try:
            return st.check(name, value)
        except BayesmerError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _sampling(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("settings (these win over the model file; checked as bayesmer.fit checks them)")
    helps = {
        "draws": ("N", "draws per chain after tuning"),
        "tune": ("N", "tuning steps per chain"),
        "chains": ("N", "number of chains"),
        "seed": ("S", "random seed"),
        "target_accept": ("P", "NUTS target acceptance rate, in (0, 1)"),
        "sampler": ("{" + ",".join(st.SAMPLERS) + "}", "NUTS implementation"),
        "strategy": ("{" + ",".join(st.STRATEGIES) + "}", "marginal integrates the random effects out"),
        "method": ("{" + ",".join(st.METHODS) + "}", "criterion of the exact fit reported beside the posterior"),
        "backend": ("{" + ",".join(st.BACKENDS) + "}", "how nutpie evaluates the model"),
        "family": ("FAMILY", "the response's family, by brms's name or an alias (bayesmer.families.family_names()): "
                   "binomial, poisson (beside lme4's glmer), negbinomial, zero_inflated_poisson, "
                   "zero_inflated_negbinomial, student, Gamma, lognormal, beta, cumulative (beside glmmTMB, clmm)"),
        "link": ("LINK", "the family's link: logit, probit, cloglog (binomial), log (poisson), inverse (Gamma), "
                 "probit (cumulative)"),
    }
    for name in st.SECTION:
        metavar, text = helps[name]
        g.add_argument("--" + name.replace("_", "-"), type=_setting(name), metavar=metavar, help=text)
    p.add_argument(
        "--prior",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help='a prior, e.g. --prior sd="HalfCauchy(10)" or --prior "sd(Days|Subject)=HalfNormal(5)"; repeatable',
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or chatter; the table is still printed")
    p.add_argument("--no-report", action="store_true", help="write the posterior and the table but no plots/report")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="bayesmer",
        description="Bayesian mixed-effects models from lme4 formulas: exact REML and NUTS side by side.",
    )
    parser.add_argument("--version", action="version", version=f"bayesmer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="fit a model file (models/*.toml)", description="Fit a model file.")
    run.add_argument("model", metavar="MODEL.toml", help="the model file")
    run.add_argument("--out", metavar="DIR", help="output folder (default out/<model name>)")
    run.add_argument(
        "--sensitivity", action="store_true", help="also refit for each prior in the file's [sensitivity] grid"
    )
    _sampling(run)
    _common(run)

    fit = sub.add_parser("fit", help="fit a formula to a CSV file", description="Fit a formula to a CSV file.")
    fit.add_argument("formula", help='an lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    fit.add_argument("data", metavar="DATA", help="a CSV file, or a bundled data set name")
    fit.add_argument("--out", metavar="DIR", help="also write the posterior, the table and a report here")
    _sampling(fit)
    _common(fit)

    reml = sub.add_parser("reml", help="exact REML/ML fit, printed as lme4", description="Exact REML/ML fit.")
    reml.add_argument("formula", help="an lme4 formula")
    reml.add_argument("data", metavar="DATA", help="a CSV file, or a bundled data set name")
    reml.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    _common(reml)

    ds = sub.add_parser("datasets", help="list the bundled data sets")
    _common(ds)
    return parser


# ---- helpers --------------------------------------------------------------


def _say(args, *lines: str) -> None:
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line, file=sys.stderr)


def _read_data(arg: str) -> pd.DataFrame:
    import pandas as pd

    from . import datasets

    path = Path(arg)
    if path.is_file():
        try:
            return pd.read_csv(path)
        except Exception as exc:  # pandas has many parser errors
            raise CommandError(f"{arg}: cannot read as CSV: {exc}") from None
    if arg in datasets.list_datasets():
        return datasets.load(arg)
    if path.is_dir():
        raise CommandError(f"{arg}: is a folder, not a CSV file")
    raise CommandError(
        f"{arg}: no such CSV file (nor a bundled data set: {', '.join(datasets.list_datasets())})"
    )


def _parse_prior_flags(flags: list[str]) -> dict[str, str]:
    from .priors import PriorError, parse_prior

    out: dict[str, str] = {}
    for flag in flags:
        name, sep, spec = flag.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise CommandError(f"--prior {flag!r}: expected NAME=SPEC, e.g. --prior sd=HalfCauchy(10)")
        try:
            parse_prior(spec)
        except PriorError as exc:
            raise CommandError(f"--prior {name}: {exc}") from None
        out[name] = spec
    return out


def _check_prior_names(formula: str, data: pd.DataFrame, priors: dict, where: str, settings: dict) -> None:
    """Resolve the priors against the design now, so a bad name fails before sampling."""
    from .modelfile import _prior_design
    from .priors import PriorError, resolve_priors

    design, family = _prior_design(formula, data, settings.get("family"), settings.get("link"))
    for name, spec in priors.items():
        try:
            resolve_priors(design, {name: spec}, family=family)
        except PriorError as exc:
            raise CommandError(f"{where} {name}: {exc}") from None


def _fit(args, formula: str, data: pd.DataFrame, priors: dict, settings: dict):
    from .api import fit

    # unset settings fall back to fit()'s own defaults
    return fit(formula, data, priors=priors or None, progress=not args.quiet, **settings)


def _settings(args, base: dict) -> dict:
    """The model file's settings, overridden by the flags given (the family and its link checked together)."""
    from .modelfile import check_family

    out = dict(base)
    for key in st.SECTION:
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    try:  # the link is one of the family's (the file's family with a flag's link, say)
        check_family(out.get("family"), out.get("link"))
    except BayesmerError as exc:
        flags = " ".join(f"--{k} {getattr(args, k)}" for k in ("family", "link") if getattr(args, k, None) is not None)
        raise CommandError(f"{flags or 'family'}: {exc}") from None
    return out


def _used(settings: dict, fit) -> dict:
    """The settings as run: with the seed fit() drew when none was given, so the report can be rerun."""
    seed = getattr(fit, "settings", {}).get("seed")
    return settings if seed is None else {**settings, "seed": seed}


def _summary_table(fit) -> pd.DataFrame:
    import pandas as pd

    table = fit.summary()
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    return table


def _print_table(table: pd.DataFrame) -> None:
    import pandas as pd

    # a blank where a column has no value for a row (REML gives no standard error of an SD)
    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
        print(table.to_string(float_format=lambda v: "" if v != v else f"{v:.4g}"))


# ---- writing results ------------------------------------------------------


def _write_outputs(args, fit, table: pd.DataFrame, out: Path, meta: dict,
                   sensitivity: pd.DataFrame | None = None) -> list[str]:
    """Write the posterior, the table(s) and the report to ``out``; returns notes on what failed.

    All or nothing for the results: everything is written to a folder beside
    ``out`` and moved in only once the posterior and the tables are written,
    so a full disk or Ctrl-C leaves ``out`` as it was (absent, or the previous
    run's). A failed plot or report is a note: the fit is not lost for it.

    Raises
    ------
    SaveError
        Naming the folder or file that could not be written.
    """
    import secrets
    import shutil

    from .errors import SaveError

    if out.exists() and not out.is_dir():
        raise SaveError(f"{out}: not written: it is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # mkdir, not tempfile.mkdtemp: the folder becomes out, with the permissions the umask gives
        stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
        stage.mkdir()
    except OSError as exc:
        raise SaveError(f"{out}: not written: {exc.strerror or exc}") from exc
    try:
        notes = _write_into(args, fit, table, stage, meta, sensitivity)
        _move_in(stage, out)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, OSError):  # SaveError too: it names the staged file, gone now
            cause = exc.__cause__ if isinstance(exc, SaveError) and exc.__cause__ is not None else exc
            reason = (getattr(cause, "strerror", None) or str(cause) if isinstance(cause, OSError)
                      else f"{type(cause).__name__}: {cause}")
            raise SaveError(f"{out}: not written (left as it was): {reason}") from exc
        raise
    return notes


def _write_into(args, fit, table, folder: Path, meta: dict, sensitivity) -> list[str]:
    table.to_csv(folder / "summary.csv")
    if sensitivity is not None:
        sensitivity.to_csv(folder / "sensitivity.csv")
    # bayesmer.load(out / "posterior.nc") gives the fit back
    fit.save(folder / "posterior.nc")
    notes: list[str] = []
    if not getattr(args, "no_report", False):
        try:
            notes += _write_report(fit, table, folder, meta)
        except Exception as exc:  # a plotting failure must not lose the fit
            notes.append(f"report not written: {type(exc).__name__}: {exc}")
    return notes


def _move_in(stage: Path, out: Path) -> None:
    """The staged files into ``out``: the folder renamed into place, or each file renamed over its old copy."""
    import os

    if not out.exists():
        os.rename(stage, out)
        return
    for f in stage.iterdir():
        os.replace(f, out / f.name)
    stage.rmdir()


def _hyper_vars(fit) -> list[str]:
    """The posterior's hyperparameters (beta, sd_*, corr_*, sigma): per-level effects may number thousands."""
    return list(fit.built.hyper_names)


def _save_plot(plot, fit, path: Path, height: float, **kwargs) -> None:
    """Draw ``plot`` (an arviz_plots function) of the fit's hyperparameters with matplotlib and save it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = sum(int(fit.idata["posterior"][v].size // (fit.idata["posterior"].sizes["chain"] * fit.idata["posterior"].sizes["draw"]))
            for v in _hyper_vars(fit))
    before = set(plt.get_fignums())
    try:
        pc = plot(
            fit.idata,
            var_names=_hyper_vars(fit),
            backend="matplotlib",
            figure_kwargs={"figsize": (10, height * n), "layout": "constrained"},
            **kwargs,
        )
        pc.savefig(path, dpi=90)
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)


def _plot_trace(fit, path: Path) -> None:
    """Per parameter, the chains' densities (left) and traces (right), by arviz_plots."""
    import arviz_plots as azp

    _save_plot(azp.plot_trace_dist, fit, path, height=1.9, compact=False)


def _plot_rank(fit, path: Path) -> None:
    """Rank Δ-ECDF per chain and parameter, by arviz_plots: flat bands are mixed chains."""
    import arviz_plots as azp

    chains = fit.idata["posterior"].sizes["chain"]
    # the multiple-testing correction needs two chains; one chain gets the simultaneous envelope
    method = "mtc_c" if chains > 1 else "envelope"
    _save_plot(azp.plot_rank, fit, path, height=0.9, col_wrap=3, method=method)


def _markdown_table(table: pd.DataFrame) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    names = [n or "" for n in table.index.names]
    cols = names + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in table.iterrows():
        keys = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join([cell(k) for k in keys] + [cell(v) for v in row]) + " |")
    return "\n".join(lines)


def _write_report(fit, table: pd.DataFrame, out: Path, meta: dict) -> list[str]:
    """report.md with the run's settings, the table, REML summary and plots."""
    notes: list[str] = []
    lines = [f"# {meta.get('name', 'bayesmer fit')}", ""]
    if meta.get("description"):
        lines += [str(meta["description"]), ""]
    for key in ("model file", "data", "rows", "formula", "strategy", "seconds", "sensitivity"):
        if meta.get(key) is not None:
            lines.append(f"- **{key}**: `{meta[key]}`")
    if meta.get("sampler"):
        lines.append("- **sampler**: " + ", ".join(f"{k}={v}" for k, v in meta["sampler"].items()))
    lines.append("")
    priors = getattr(fit, "priors", None)
    lines += ["## Priors", "", "```", str(priors) if priors is not None else _priors_text(meta), "```", ""]
    lines += ["## REML and posterior", "", _markdown_table(table), ""]
    reml = getattr(fit, "reml", None)
    if reml is not None and hasattr(reml, "summary"):
        try:
            lines += ["## Exact fit", "", "```", str(reml.summary()), "```", ""]
        except Exception as exc:
            notes.append(f"REML summary not in the report: {exc}")
    for fname, title, plot in (("trace.png", "Trace", _plot_trace), ("rank.png", "Rank", _plot_rank)):
        try:
            plot(fit, out / fname)
            lines += [f"## {title}", "", f"![{title.lower()} plot]({fname})", ""]
        except Exception as exc:
            notes.append(f"{fname} not drawn: {type(exc).__name__}: {exc}")
    (out / "report.md").write_text("\n".join(lines))
    return notes


def _priors_text(meta: dict) -> str:
    priors = meta.get("priors") or {}
    if not priors:
        return "defaults (scaled to the data)"
    return "\n".join(f"{k} = {v}" for k, v in priors.items()) + "\nothers: defaults (scaled to the data)"


# ---- commands -------------------------------------------------------------


def _cmd_run(args) -> int:
    from .modelfile import check_priors, load_data, load_model_file

    spec = load_model_file(args.model)
    data = load_data(spec)
    check_priors(spec, data)
    priors = spec.prior_dict
    flags = _parse_prior_flags(args.prior)
    if flags:
        _check_prior_names(spec.formula, data, flags, "--prior", _settings(args, spec.settings()))
        priors.update(flags)
    settings = _settings(args, spec.settings())
    strategy = settings.get("strategy")
    _say(args, f"bayesmer: {spec.name}: {spec.formula}  [{spec.data.describe()}, {len(data)} rows]")
    t0 = time.perf_counter()
    fit = _fit(args, spec.formula, data, priors, settings)
    seconds = time.perf_counter() - t0
    table = _summary_table(fit)
    _print_table(table)
    out = Path(args.out) if args.out else Path("out") / spec.name
    meta = {
        "name": spec.name,
        "description": spec.description,
        "model file": str(spec.path),
        "data": spec.data.describe(),
        "rows": len(data),
        "formula": spec.formula,
        "priors": priors,
        "sampler": _used(settings, fit),
        "strategy": strategy,
        "seconds": round(seconds, 2),
    }
    grid = None
    if args.sensitivity and spec.sensitivity:
        grid = _sensitivity(args, spec, data, priors, settings)
        meta["sensitivity"] = str(out / "sensitivity.csv")
    notes = _write_outputs(args, fit, table, out, meta, grid)
    for note in notes:
        print(f"bayesmer: warning: {note}", file=sys.stderr)
    _say(args, f"bayesmer: wrote {out}/ in {seconds:.1f} s of fitting")
    return 0


def _sensitivity(args, spec, data, priors, settings) -> pd.DataFrame:
    """The table of every refit over the file's [sensitivity] grid (written with the other outputs)."""
    import pandas as pd

    rows = []
    for name, alternatives in spec.sensitivity:
        for alt in alternatives:
            _say(args, f"bayesmer: sensitivity: {name} = {alt}")
            fit = _fit(args, spec.formula, data, {**priors, name: alt}, settings)
            t = _summary_table(fit).copy()
            t.insert(0, "prior", alt)
            t.insert(0, "prior_name", name)
            rows.append(t)
    return pd.concat(rows)


def _cmd_fit(args) -> int:
    data = _read_data(args.data)
    priors = _parse_prior_flags(args.prior)
    settings = _settings(args, {})
    _check_prior_names(args.formula, data, priors, "--prior", settings)
    t0 = time.perf_counter()
    fit = _fit(args, args.formula, data, priors, settings)
    seconds = time.perf_counter() - t0
    table = _summary_table(fit)
    _print_table(table)
    if args.out:
        meta = {
            "name": Path(args.data).stem,
            "data": args.data,
            "rows": len(data),
            "formula": args.formula,
            "priors": priors,
            "sampler": _used(settings, fit),
            "strategy": settings.get("strategy"),
            "seconds": round(seconds, 2),
        }
        for note in _write_outputs(args, fit, table, Path(args.out), meta):
            print(f"bayesmer: warning: {note}", file=sys.stderr)
        _say(args, f"bayesmer: wrote {args.out}/")
    return 0


def _cmd_reml(args) -> int:
    data = _read_data(args.data)
    from .lmer import reml
    fit = reml(args.formula, data, method="ML" if args.ml else "REML")
    text = fit.summary() if hasattr(fit, "summary") else str(fit)
    print(text if isinstance(text, str) else str(text))
    return 0


def _cmd_datasets(args) -> int:
    from . import datasets

    for name in datasets.list_datasets():
        print(f"{name:<18} {datasets.describe(name)}")
    return 0


_COMMANDS = {"run": _cmd_run, "fit": _cmd_fit, "reml": _cmd_reml, "datasets": _cmd_datasets}


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    return " ".join(text.split())


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input: reported without the 'use --debug' hint (all derive from BayesmerError)."""
    return (BayesmerError,)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    text = str(message).strip().splitlines()
    print(f"bayesmer: warning: {text[0] if text else category.__name__}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmer`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _show_warning
        return _main(args)


def _main(args) -> int:
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:
        # outputs are staged and moved in last (_write_outputs): an interrupt leaves none
        detail = f": {exc}" if str(exc) else ""
        print(f"bayesmer: interrupted{detail}; nothing written", file=sys.stderr)
        return EXIT_INTERRUPT
    except Exception as exc:
        if args.debug:
            raise
        hint = "" if isinstance(exc, _expected_errors()) else f" ({type(exc).__name__}; rerun with --debug for the traceback)"
        print(f"bayesmer: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
