"""Honest under faults: Ctrl-C, failed writes, non-finite draws, the seed used, a light --help."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayesmer
from bayesmer import sampling
from conftest import SLEEP, quiet_fit

SRC = str(Path(__file__).parents[1] / "src")
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"

# prints SAMPLING once the sampler is called (after the compile), so the parent
# interrupts sampling itself, not the imports or the compile
_MARK = """
import sys, warnings
import nutpie, pymc

def _marked(run):
    def wrapper(*a, **k):
        print("SAMPLING", flush=True)
        return run(*a, **k)
    return wrapper

nutpie.sample = _marked(nutpie.sample)
pymc.sample = _marked(pymc.sample)
warnings.simplefilter("ignore")
"""


def _env():
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _interrupt(code: str, cwd, delay: float = 2.0, timeout: float = 600):
    """Run ``code`` in a child, send it SIGINT ``delay`` s after it starts sampling; (status, stdout, stderr)."""
    child = subprocess.Popen([sys.executable, "-c", _MARK + textwrap.dedent(code)], cwd=cwd, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + timeout
        for line in child.stdout:  # blocks until the marker, or the end of the child
            seen.append(line)
            if line.startswith("SAMPLING") or time.monotonic() > deadline:
                break
        assert seen and seen[-1].startswith("SAMPLING"), "".join(seen) + child.stderr.read()
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, "".join(seen) + out, err


_FIT = """
import bayesmer
data = bayesmer.datasets.load({data!r})
try:
    fit = bayesmer.fit({formula!r}, data, draws=200_000, tune=100, chains=2, seed=1, progress=False, {extra})
except KeyboardInterrupt as exc:
    print("INTERRUPTED:", exc, flush=True)
    sys.exit(42)
print("FIT RETURNED", flush=True)
print(fit)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, formula, extra",
    [
        ("sleepstudy", SLEEP, ""),
        ("cbpp", CBPP, "family='binomial'"),
        ("sleepstudy", SLEEP, "strategy='full'"),
        ("sleepstudy", "Reaction ~ Days + (1 | Subject)", "sampler='pymc'"),
    ],
    ids=["gaussian", "binomial", "full", "pymc"],
)
def test_ctrl_c_while_sampling_raises_keyboard_interrupt(tmp_path, data, formula, extra):
    code, out, err = _interrupt(_FIT.format(data=data, formula=formula, extra=extra), tmp_path)
    assert code == 42, out + err
    assert "FIT RETURNED" not in out and "Formula:" not in out
    assert "INTERRUPTED: sampling interrupted" in out
    # how far it got: "N of 400000 draws made" or, stopped before any draw, "before its 400000 draws"
    assert "400000 draws" in out


@pytest.mark.slow
def test_run_interrupted_exits_130_and_writes_nothing(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (Days | Subject)"\n')
    out = tmp_path / "results" / "o"
    code, stdout, err = _interrupt(
        f"""
        from bayesmer.cli import main
        sys.exit(main(["run", {str(model)!r}, "--draws", "200000", "--tune", "100", "--chains", "2",
                       "--quiet", "--out", {str(out)!r}]))
        """,
        tmp_path,
    )
    assert code == 130, stdout + err
    assert "bayesmer: interrupted: sampling interrupted" in err and "nothing written" in err
    assert "mean" not in stdout  # no table printed
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.toml"]


# ---- draws that are not a posterior sample --------------------------------------------


def test_non_finite_draws_raise_naming_the_variables(sleep, monkeypatch):
    run = sampling._run_nutpie

    def nan_sigma(*args, **kwargs):
        raw, *rest = run(*args, **kwargs)
        post = raw["posterior"].to_dataset()
        post["sigma"][:, -5:] = np.nan  # as nutpie pads a run it stopped
        raw["posterior"] = post
        return (raw, *rest)

    monkeypatch.setattr(sampling, "_run_nutpie", nan_sigma)
    with pytest.raises(bayesmer.SamplingError, match=r"non-finite draws of sigma\b"):
        quiet_fit(SLEEP, sleep, draws=30, tune=30)


def test_short_trace_raises(sleep, monkeypatch):
    run = sampling._run_nutpie

    def short(*args, **kwargs):
        raw, *rest = run(*args, **kwargs)
        return (raw.isel(draw=slice(0, 10)), *rest)

    monkeypatch.setattr(sampling, "_run_nutpie", short)
    with pytest.raises(bayesmer.SamplingError, match=r"2 chains x 10 draws, not the 2 x 30.*stopped early"):
        quiet_fit(SLEEP, sleep, draws=30, tune=30)


# ---- the seed used ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unseeded(sleep):
    return quiet_fit(SLEEP, sleep, seed=None, draws=60, tune=60)


def test_seed_none_is_drawn_recorded_and_reproduces(unseeded, sleep):
    seed = unseeded.settings["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    assert unseeded.idata["posterior"].attrs["seed"] == seed
    assert f"seed {seed}" in str(unseeded)
    again = quiet_fit(SLEEP, sleep, seed=seed, draws=60, tune=60)
    for name in ("sigma", "sd_Subject", "b_Subject", "beta"):
        np.testing.assert_array_equal(again.idata["posterior"][name].values, unseeded.idata["posterior"][name].values)


def test_seed_survives_save_and_load(unseeded, tmp_path):
    back = bayesmer.load(unseeded.save(tmp_path / "fit.nc"))
    assert back.settings["seed"] == unseeded.settings["seed"]
    assert int(back.idata["posterior"].attrs["seed"]) == unseeded.settings["seed"]


# ---- saves that fail leave the previous file ---------------------------------------------


def _digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def saved(unseeded, tmp_path_factory):
    """The fit saved once as NetCDF and as Zarr: the 'previous files' the failing saves must keep."""
    folder = tmp_path_factory.mktemp("saved")
    return {suffix: unseeded.save(folder / f"fit{suffix}") for suffix in (".nc", ".zarr")}


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_full_disk_keeps_the_previous_file(saved, tmp_path, suffix):
    """A file-size limit (RLIMIT_FSIZE, as a full disk) during the save: an error naming the path, no crash."""
    import shutil

    target = tmp_path / f"fit{suffix}"
    (shutil.copytree if suffix == ".zarr" else shutil.copyfile)(saved[suffix], target)
    before = _digest(target)
    limit = 4096  # bytes: smaller than any file of the fit
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import resource, signal, sys, warnings
            import bayesmer
            warnings.simplefilter("ignore")
            fit = bayesmer.load({str(target)!r})
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
            try:
                fit.save({str(target)!r})
            except bayesmer.SaveError as exc:
                print("SAVEERROR:", exc)
                sys.exit(3)
            print("SAVED")
        """)],
        env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert child.returncode == 3, child.stdout + child.stderr  # not -11: no HDF5 crash
    assert f"SAVEERROR: {target}: not written (the previous one is unchanged)" in child.stdout
    assert _digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # the temporary file is gone
    assert bayesmer.load(target).settings["seed"] is not None


def test_failing_write_keeps_the_previous_file(unseeded, saved, tmp_path, monkeypatch):
    import shutil

    target = tmp_path / "fit.nc"
    shutil.copyfile(saved[".nc"], target)
    before = _digest(target)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(bayesmer.SaveError, match=rf"{target}: not written .*No space left on device") as err:
        unseeded.save(target)
    assert isinstance(err.value, OSError)
    assert _digest(target) == before and [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_save_into_a_missing_or_non_folder(unseeded, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(bayesmer.SaveError, match=rf"{afile / 'fit.nc'}: not written: its folder .* is not a folder"):
        unseeded.save(afile / "fit.nc")
    with pytest.raises(bayesmer.SaveError, match="does not exist"):
        unseeded.save(tmp_path / "nope" / "fit.nc")
    folder = tmp_path / "fit.nc"
    (folder / "keep").mkdir(parents=True)
    with pytest.raises(bayesmer.SaveError, match=rf"{folder}: not written.*is a folder"):
        unseeded.save(folder)
    assert (folder / "keep").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "fit.nc"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: the 'parent is a file' case covers it")
def test_read_only_folder(unseeded, saved, tmp_path):
    import shutil

    target = tmp_path / "fit.nc"
    shutil.copyfile(saved[".nc"], target)
    before = _digest(target)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(bayesmer.SaveError, match=str(target)):
            unseeded.save(target)
    finally:
        tmp_path.chmod(0o755)
    assert _digest(target) == before


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_replaces_and_leaves_no_temporary(unseeded, saved, tmp_path, suffix):
    import shutil

    target = tmp_path / f"fit{suffix}"
    (shutil.copytree if suffix == ".zarr" else shutil.copyfile)(saved[suffix], target)
    unseeded.save(target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert bayesmer.load(target).settings == unseeded.settings


# ---- a light --help -----------------------------------------------------------------------


def test_help_imports_no_numerics():
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from bayesmer.cli import main
            try:
                main(["run", "--help"])
            except SystemExit:
                pass
            heavy = ("numpy", "pandas", "scipy", "xarray", "pymc", "pytensor", "numba", "nutpie")
            print("HEAVY:", sorted(m for m in heavy if m in sys.modules))
        """)],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert "--draws" in child.stdout and "HEAVY: []" in child.stdout


def test_package_names_resolve_lazily():
    import bayesmer.glmer_fit  # noqa: F401  (the module of the glmer function: no name shadows another)
    import bayesmer.glmmtmb_fit  # noqa: F401

    assert callable(bayesmer.glmer) and bayesmer.glmer.__module__ == "bayesmer.glmer_fit"
    assert callable(bayesmer.glmmtmb) and bayesmer.glmmtmb.__module__ == "bayesmer.glmmtmb_fit"
    missing = [n for n in bayesmer.__all__ if not hasattr(bayesmer, n)]
    assert missing == []
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        bayesmer.nosuch
