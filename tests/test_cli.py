"""The bayesmer command: errors, reml, and run/fit plumbing."""

import importlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmer
from bayesmer import cli

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"
MODELS = sorted((ROOT / "models").glob("*.toml"))
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = '[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (Days | Subject)"\n'


@pytest.mark.parametrize(
    "text, needles",
    [
        ('[data]\ndataset = "sleepstudy"\n[model]\nname = "x"\n', ["[model] formula", "missing key"]),
        (GOOD + "[sampler]\ndraw = 10\n", ["[sampler] draw", "unknown key", "draws"]),
        (GOOD.replace("(Days | Subject)", "(Days | Subject"), ["[model] formula", "unbalanced"]),
        ('[data]\ndataset = "sleepstudyy"\n[model]\nformula = "y ~ 1 + (1|g)"\n', ["[data] dataset", "'sleepstudyy'", "sleepstudy"]),
        ('[data]\ncsv = "missing.csv"\n[model]\nformula = "y ~ 1 + (1|g)"\n', ["[data] csv", "'missing.csv'", "does not exist"]),
        (GOOD + "[priors]\n'sd(Day|Subject)' = 'HalfCauchy(1)'\n", ["[priors] sd(Day|Subject)", "valid names"]),
        (GOOD.replace("Days +", "Dayz +"), ["[model] formula", "unknown column 'Dayz'"]),
    ],
)
def test_model_file_errors(tmp_path, capsys, text, needles):
    path = _write(tmp_path, text)
    code, out, err = _run(["run", path, "--quiet"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bayesmer: error: {path}:"), err
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err


def test_missing_model_file(capsys):
    code, _, err = _run(["run", "no/such/model.toml"], capsys)
    assert code != 0 and "no/such/model.toml: no such model file" in err


def test_debug_shows_the_exception(tmp_path):
    path = _write(tmp_path, GOOD + "[sampler]\ndraw = 1\n")
    from bayesmer.modelfile import ModelFileError

    with pytest.raises(ModelFileError):
        cli.main(["run", str(path), "--debug"])


def test_console_entry_point_exit_code_and_one_line(tmp_path):
    path = _write(tmp_path, '[data]\ndataset = "nope"\n[model]\nformula = "y ~ 1 + (1|g)"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "bayesmer.cli", "run", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "[data] dataset" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["reml", SLEEP, "nothere.csv"], "nothere.csv: no such CSV file"),
        (["fit", SLEEP, "nothere.csv"], "nothere.csv: no such CSV file"),
        (["reml", "Reaction ~ Days", "sleepstudy"], "no random-effect term"),
        (["reml", "Reaction ~ Dayz + (1|Subject)", "sleepstudy"], "unknown column 'Dayz'"),
        (["fit", SLEEP, "sleepstudy", "--prior", "sd=Cauchy(1)"], "--prior sd: unknown prior family"),
        (["fit", SLEEP, "sleepstudy", "--prior", "sd"], "expected NAME=SPEC"),
        (["fit", SLEEP, "sleepstudy", "--prior", "sd(Day|Subject)=HalfCauchy(1)"], "--prior sd(Day|Subject)"),
    ],
)
def test_command_line_errors(capsys, argv, needle):
    code, _, err = _run(argv, capsys)
    assert code != 0
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_bad_flag_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "models/sleepstudy.toml", "--draws", "0"])
    assert exc.value.code == 2
    assert "--draws" in capsys.readouterr().err


@pytest.mark.parametrize("method, ref", [([], "sleepstudy_reml.json"), (["--ml"], "sleepstudy_ml.json")])
def test_reml_matches_lme4(capsys, method, ref):
    code, out, err = _run(["reml", SLEEP, "sleepstudy", *method], capsys)
    assert code == 0, err
    want = json.loads((DATA / ref).read_text())
    fixed = out.split("Fixed effects:")[1]
    for name, value in zip(want["fixef_names"], want["fixef"]):
        m = re.search(rf"^{re.escape(name)}\s+(\S+)", fixed, re.M)
        assert m, (name, out)
        assert float(m.group(1)) == pytest.approx(value, rel=1e-3)
    assert ("REML" in out) == (not method)


def test_datasets_command(capsys):
    code, out, _ = _run(["datasets"], capsys)
    assert code == 0 and "sleepstudy" in out and "pastes" in out


# ---- run/fit plumbing with a stand-in for bayesmer.fit -------------------


class _FakeFit:
    def __init__(self, formula, data, **kwargs):
        import arviz as az

        self.kwargs = kwargs
        rng = np.random.default_rng(0)
        chains, draws = kwargs.get("chains", 2), kwargs.get("draws", 20)
        self.idata = az.from_dict(
            {
                "posterior": {
                    "beta": rng.standard_normal((chains, draws, 2)),
                    "sigma": np.abs(rng.standard_normal((chains, draws))),
                    "u": rng.standard_normal((chains, draws, 18)),
                }
            },
            dims={"beta": ["fixed"], "u": ["level"]},
            coords={"fixed": ["(Intercept)", "Days"], "level": list(range(18))},
        )
        self.reml = None
        self.built = types.SimpleNamespace(hyper_names=["beta", "sigma"])

    def save(self, path):
        self.idata.to_netcdf(path)

    def summary(self):
        return pd.DataFrame(
            {"reml": [251.4, 10.47], "mean": [251.2, 10.46], "sd": [7.4, 1.7]},
            index=pd.Index(["(Intercept)", "Days"], name="parameter"),
        )


@pytest.fixture
def fake_fit(monkeypatch):
    calls = []

    def fit(formula, data, priors=None, progress=True, **settings):
        bayesmer.Settings(**settings)  # what the real fit() checks first
        settings = {"draws": 20, "chains": 2} | settings
        f = _FakeFit(formula, data, priors=priors, progress=progress, **settings)
        calls.append(f.kwargs | {"formula": formula, "n": len(data)})
        return f

    monkeypatch.setattr("bayesmer.api.fit", fit)
    return calls


def test_run_passes_file_settings_and_flags(tmp_path, capsys, fake_fit):
    out = tmp_path / "o"
    code, stdout, err = _run(
        ["run", ROOT / "models" / "sleepstudy.toml", "--draws", "30", "--chains", "3", "--quiet", "--out", out,
         "--prior", "Days=Normal(0, 20)"],
        capsys,
    )
    assert code == 0, err
    (call,) = fake_fit
    assert call["draws"] == 30 and call["chains"] == 3 and call["tune"] == 1000 and call["seed"] == 2024
    assert call["sampler"] == "nutpie" and call["progress"] is False and call["method"] == "REML"
    assert call["priors"] == {"fixed": "Normal(0, 500)", "sd": "HalfCauchy(50)", "sigma": "HalfCauchy(50)",
                              "corr": "LKJ(2)", "Days": "Normal(0, 20)"}
    assert "251.2" in stdout
    assert {"summary.csv", "posterior.nc", "report.md", "trace.png", "rank.png"} <= {p.name for p in out.iterdir()}
    assert pd.read_csv(out / "summary.csv", index_col=0).shape == (2, 3)
    report = (out / "report.md").read_text()
    assert "Reaction ~ Days" in report and "![trace plot](trace.png)" in report
    assert err == ""


def test_run_default_out_is_out_slash_name(tmp_path, capsys, fake_fit, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["run", ROOT / "models" / "dyestuff.toml", "--quiet", "--no-report"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "dyestuff" / "summary.csv").is_file()
    assert not (tmp_path / "out" / "dyestuff" / "report.md").exists()


def test_plot_failure_keeps_the_fit(tmp_path, capsys, fake_fit, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("no display")

    monkeypatch.setattr(cli, "_plot_trace", boom)
    out = tmp_path / "o"
    code, _, err = _run(["run", ROOT / "models" / "sleepstudy.toml", "--quiet", "--out", out], capsys)
    assert code == 0
    assert "trace.png not drawn" in err
    assert (out / "posterior.nc").is_file() and (out / "summary.csv").is_file() and (out / "rank.png").is_file()


def test_run_sensitivity_grid(tmp_path, capsys, fake_fit):
    out = tmp_path / "o"
    code, _, err = _run(["run", ROOT / "models" / "dyestuff.toml", "--quiet", "--out", out, "--sensitivity"], capsys)
    assert code == 0, err
    assert len(fake_fit) == 4
    assert [c["priors"]["sd"] for c in fake_fit[1:]] == ["HalfCauchy(10)", "HalfCauchy(100)", "HalfCauchy(1000)"]
    grid = pd.read_csv(out / "sensitivity.csv")
    assert grid.shape[0] == 6 and set(grid["prior"]) == {"HalfCauchy(10)", "HalfCauchy(100)", "HalfCauchy(1000)"}


def test_fit_command_csv_and_priors(tmp_path, capsys, fake_fit):
    csv = tmp_path / "sleep.csv"
    bayesmer.datasets.load("sleepstudy").to_csv(csv, index=False)
    code, stdout, err = _run(
        ["fit", SLEEP, csv, "--prior", "sd=HalfCauchy(10)", "--draws", "25", "--quiet"], capsys
    )
    assert code == 0, err
    assert fake_fit[0]["priors"] == {"sd": "HalfCauchy(10)"} and fake_fit[0]["n"] == 180
    assert "mean" in stdout


# ---- the real sampler --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS, ids=[m.stem for m in MODELS])
def test_every_model_file_runs(tmp_path, capsys, model):
    from bayesmer.modelfile import load_model_file

    spec = load_model_file(model)
    out = tmp_path / spec.name
    code, stdout, err = _run(
        ["run", model, "--draws", "50", "--tune", "50", "--chains", "1", "--quiet", "--out", out], capsys
    )
    assert code == 0, err
    assert (out / "summary.csv").is_file() and (out / "posterior.nc").is_file() and (out / "report.md").is_file()
    assert "bayesmer: error" not in err


# ---- outputs: all or nothing; data paths reported ------------------------------


def test_failed_posterior_write_keeps_the_previous_outputs(tmp_path, capsys, fake_fit, monkeypatch):
    out = tmp_path / "o"
    code, _, err = _run(["run", ROOT / "models" / "dyestuff.toml", "--quiet", "--no-report", "--out", out], capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_FakeFit, "save", full)
    code, stdout, err = _run(["run", ROOT / "models" / "dyestuff.toml", "--quiet", "--out", out], capsys)
    assert code == 1
    assert f"bayesmer: error: {out}: not written (left as it was): No space left on device" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no report.md added, nothing changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left


def test_out_that_is_a_file_is_refused(tmp_path, capsys, fake_fit):
    out = tmp_path / "o"
    out.write_text("mine")
    code, _, err = _run(["run", ROOT / "models" / "dyestuff.toml", "--quiet", "--out", out], capsys)
    assert code == 1 and f"{out}: not written: it is a file, not a folder" in err
    assert out.read_text() == "mine"


def test_run_reports_the_csv_it_reads(tmp_path, capsys, fake_fit):
    inside = tmp_path / "models" / "data" / "sleep.csv"
    inside.parent.mkdir(parents=True)
    bayesmer.datasets.load("sleepstudy").to_csv(inside, index=False)
    model = _write(tmp_path / "models", GOOD.replace('dataset = "sleepstudy"', 'csv = "data/sleep.csv"'))
    code, _, err = _run(["run", model, "--out", tmp_path / "o", "--no-report"], capsys)
    assert code == 0, err
    assert f"csv {inside}" in err and "outside" not in err
    # a CSV outside the model file's folder is read, and said to be
    outside = tmp_path / "elsewhere.csv"
    inside.rename(outside)
    model = _write(tmp_path / "models", GOOD.replace('dataset = "sleepstudy"', 'csv = "../elsewhere.csv"'))
    code, _, err = _run(["run", model, "--out", tmp_path / "o", "--no-report", "--quiet"], capsys)
    assert code == 0, err
    assert f"[data] csv reads {outside}, outside the model file's folder" in err


def test_report_names_the_seed_fit_drew(tmp_path, capsys, fake_fit, monkeypatch):
    monkeypatch.setattr(_FakeFit, "settings", {"seed": 987654}, raising=False)
    out = tmp_path / "o"
    code, _, err = _run(["fit", SLEEP, "sleepstudy", "--quiet", "--out", out], capsys)
    assert code == 0, err
    assert "seed=987654" in (out / "report.md").read_text()
