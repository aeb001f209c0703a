"""One settings check: fit(), model files and the command line accept and refuse the same values."""

import pytest
from conftest import SLEEP

import bayesmer
from bayesmer import cli, settings
from bayesmer.modelfile import ModelFileError, load_model_file

# per setting, a value every entry point must refuse and one (not the default) they must accept
BAD = {
    "draws": 0, "tune": 0, "chains": 0, "seed": -1, "target_accept": 1.5,
    "sampler": "stan", "strategy": "centered", "method": "MLE", "backend": "jax",
    "family": "negbin", "link": "logitt",
}
GOOD = {
    "draws": 7, "tune": 3, "chains": 1, "seed": 0, "target_accept": 0.9,
    "sampler": "pymc", "strategy": "full", "method": "ML", "backend": "numba",
    "family": "poisson", "link": "identity",
}
MODEL = '[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (Days | Subject)"\n'


def test_every_setting_is_covered():
    assert set(BAD) == set(GOOD) == set(settings.SECTION) == {f.name for f in settings.Settings.__dataclass_fields__.values()}


def _toml(value):
    return f'"{value}"' if isinstance(value, str) else str(value)


def _model_file(tmp_path, name, value):
    section = settings.SECTION[name]
    text = MODEL.replace("[model]\n", f"[model]\n{name} = {_toml(value)}\n") if section == "model" else (
        MODEL + f"[sampler]\n{name} = {_toml(value)}\n")
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list(BAD))
def test_fit_model_file_and_cli_refuse_with_one_message(name, tmp_path, capsys, sleep):
    with pytest.raises(bayesmer.SettingsError) as err:
        bayesmer.fit(SLEEP, sleep, **{name: BAD[name]}, progress=False)
    message = str(err.value)
    assert name in message and repr(BAD[name]) in message
    with pytest.raises(ModelFileError) as err:
        load_model_file(_model_file(tmp_path, name, BAD[name]))
    assert str(err.value).endswith(f"[{settings.SECTION[name]}] {name}: {message}")
    for command in (["run", "models/sleepstudy.toml"], ["fit", SLEEP, "sleepstudy"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main([*command, "--" + name.replace("_", "-"), str(BAD[name])])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", list(GOOD))
def test_what_model_files_and_the_cli_accept_fit_accepts(name, tmp_path):
    spec = load_model_file(_model_file(tmp_path, name, GOOD[name]))
    args = cli._parser().parse_args(["fit", SLEEP, "sleepstudy", "--" + name.replace("_", "-"), str(GOOD[name])])
    from_cli = cli._settings(args, {})
    assert spec.settings() == from_cli == {name: GOOD[name]}
    # what fit() checks first: the same object, the same value
    assert getattr(bayesmer.Settings(**from_cli), name) == GOOD[name]


def test_method_is_case_insensitive_everywhere(tmp_path):
    assert bayesmer.Settings(method="ml").method == "ML"
    assert load_model_file(_model_file(tmp_path, "method", "ml")).method == "ML"


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"bayesmer {bayesmer.__version__}"
