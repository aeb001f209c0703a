"""The documentation site (docs/): it builds with warnings as errors, its code runs.

- every public name has a numpydoc docstring with its sections (docs/_ext/apicheck.py, which the
  Sphinx build also runs), and the examples in those docstrings run (doctest);
- every ```python block of the site's pages (and of README.md) runs, page by page in one namespace (small draws are
  written into the blocks that sample); every ``bayesmer ...`` line of a ```bash block runs through
  the command line's entry point (install commands and the like are not run);
- ``sphinx-build -W --keep-going -b html docs <tmp>`` succeeds. The gallery's notebooks are rendered
  without executing them (docs/conf.py says why): tests/test_notebooks.py is their executor.

Skipped, with the reason, only when Sphinx or its extensions are not installed: the ``test`` extra
installs them.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP = {"_build", "jupyter_execute", "generated"}
# docs/gallery/models and docs/gallery/tests are links the build makes for the notebooks: not pages
PAGES = sorted(
    p for p in DOCS.rglob("*.md")
    if not SKIP & set(p.parts) and not p.relative_to(DOCS).parts[:2] in (("gallery", "models"), ("gallery", "tests"))
)
TOOLS = ("sphinx", "myst_nb", "myst_parser", "numpydoc", "pydata_sphinx_theme", "sphinx_copybutton")
MISSING = [m for m in TOOLS if importlib.util.find_spec(m) is None]
needs_sphinx = pytest.mark.skipif(
    bool(MISSING), reason=f"the docs tools are not installed ({', '.join(MISSING)}): pip install -e '.[test]'"
)
QUIET = {"MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _apicheck():
    spec = importlib.util.spec_from_file_location("apicheck", DOCS / "_ext" / "apicheck.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _blocks(path: Path, lang: str) -> list[str]:
    """The fenced blocks of one language in a MyST page, in order."""
    text = path.read_text()
    return [m.group(1) for m in re.finditer(rf"^```{lang}[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M)]


# ---- docstrings ------------------------------------------------------------------------------


@needs_sphinx
def test_every_public_name_has_a_numpydoc_docstring():
    problems = _apicheck().problems()
    assert not problems, "\n".join(problems)


def _doctests():
    if MISSING:
        return []
    finder = doctest.DocTestFinder(recurse=False)
    out = []
    for label, obj in _apicheck().targets():
        if not callable(obj) or (isinstance(obj, type) and issubclass(obj, BaseException)):
            continue
        out += [(label, t) for t in finder.find(obj, label, globs={}) if t.examples]
    return out


DOCTESTS = _doctests()


_FITS: dict = {}


def _same_fit(fit):
    """``bayesmer.fit`` remembering its fits by their arguments, for the docstring examples.

    Most examples fit sleepstudy with the same small settings and seed; a fit is deterministic in
    them, so the examples share one instead of refitting it some twenty times.
    """
    import pandas as pd

    def remembered(formula, data, priors=None, **kwargs):
        if not isinstance(data, pd.DataFrame):
            return fit(formula, data, priors, **kwargs)
        key = (formula, int(pd.util.hash_pandas_object(data, index=True).sum()), repr(priors),
               repr(sorted(kwargs.items())))
        if key not in _FITS:
            _FITS[key] = fit(formula, data, priors, **kwargs)
        return _FITS[key]

    return remembered


@needs_sphinx
@pytest.mark.slow
@pytest.mark.parametrize("label,test", DOCTESTS, ids=[label for label, _ in DOCTESTS])
def test_docstring_example_runs(label, test, monkeypatch, tmp_path):
    import bayesmer

    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    if label != "bayesmer.fit":  # its own example calls it for real
        monkeypatch.setattr(bayesmer, "fit", _same_fit(bayesmer.fit))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains warn about ESS: the examples show calls, not estimates
        runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


# ---- the pages' code ------------------------------------------------------------------------

PY_PAGES = [p for p in PAGES if _blocks(p, "python")] + [ROOT / "README.md"]
CLI_PAGES = [p for p in PAGES if any(line.startswith("bayesmer ") for b in _blocks(p, "bash") for line in b.splitlines())]


def test_the_guide_pages_have_code():
    guide = {p.name for p in PY_PAGES if p.parent.name == "guide"}
    assert {"formulas.md", "priors.md", "strategies.md", "diagnostics.md", "predictions.md"} <= guide, guide


@pytest.mark.slow
@pytest.mark.parametrize("page", PY_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_python_blocks_run(page, monkeypatch, tmp_path):
    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(_blocks(page, "python")):
        code = compile(block, f"{page.relative_to(ROOT)} block {i + 1}", "exec")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, namespace)  # noqa: S102 - the page's own code


@pytest.mark.slow
@pytest.mark.parametrize("page", CLI_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_command_lines_run(page, tmp_path, monkeypatch, capsys):
    """Each ``bayesmer ...`` line through the console script's entry point, in this process."""
    from bayesmer.cli import main

    for key, value in QUIET.items():
        monkeypatch.setenv(key, value)
    shutil.copytree(ROOT / "models", tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    for block in _blocks(page, "bash"):
        for line in block.splitlines():
            if not line.startswith("bayesmer "):
                continue
            status = main(shlex.split(line, comments=True)[1:])
            out = capsys.readouterr()
            assert status == 0, f"{line}\n{out.out[-2000:]}\n{out.err[-2000:]}"


# ---- the build ------------------------------------------------------------------------------


@needs_sphinx
@pytest.mark.slow
def test_sphinx_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    env = dict(os.environ, **QUIET)
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
           str(DOCS), str(out)]
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - start
    assert r.returncode == 0, f"sphinx-build failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    for page in ("index.html", "getting-started.html", "guide/diagnostics.html",
                 "api/generated/bayesmer.fit.html", "api/bayesfit.html", "gallery/003_clark_mixed_model_7.html"):
        assert (out / page).is_file(), page
    # every public name has its entry: a page per function and class, the modules on the API index,
    # every public method of BayesFit on its page
    import inspect

    import bayesmer

    api = _apicheck()
    missing = [
        name for name in (*bayesmer.__all__, *api.EXTRA)
        if not inspect.ismodule(getattr(bayesmer, name)) and name != "BayesFit"
        and not (out / "api" / "generated" / f"bayesmer.{name}.html").is_file()
    ]
    index = (out / "api" / "index.html").read_text()
    missing += [name for name in bayesmer.__all__
                if inspect.ismodule(getattr(bayesmer, name)) and f'id="module-bayesmer.{name}"' not in index]
    page = (out / "api" / "bayesfit.html").read_text()
    missing += [f"BayesFit.{m}" for m in api.public_methods(bayesmer.BayesFit) if f'id="bayesmer.BayesFit.{m}"' not in page]
    assert not missing, f"no API entry for {missing}"
    print(f"sphinx-build: {seconds:.0f} s")


def test_readme_keeps_the_two_setup_commands():
    """CI (.ci/run) and the project's rules depend on these two lines, byte for byte."""
    readme = (ROOT / "README.md").read_text()
    for command in (
        "python -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/bayesmer run models/sleepstudy.toml",
        "python -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q -n 2",
    ):
        assert f"```bash\n{command}\n```" in readme, command
    assert "python -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q -n 2" in (
        ROOT / ".ci" / "run"
    ).read_text()
