"""The `msda-widgets` command and the `%msda` notebook magic."""

import subprocess
import sys

import pandas as pd
import pytest

from msda_widgets import cli
from msda_widgets.app.dashboard import Dashboard
from msda_widgets.magics import load_ipython_extension, msda_magic, resolve_data


def test_voila_command_is_configured_for_a_public_page(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("t,a\n2024-01-01,1\n")
    cmd, env = cli.voila_command(str(data), 9999, "dark")
    joined = " ".join(cmd)
    assert cmd[:3] == [sys.executable, "-m", "voila"] and cmd[3].endswith("dashboard.ipynb")
    for flag in ("--port=9999", "--Voila.ip=127.0.0.1", "--theme=dark", "--strip_sources=True",
                 "--show_tracebacks=False", "--no-browser", "cull_idle_timeout=300"):
        assert flag in joined
    assert env["MSDA_WIDGETS_DATA"] == str(data.resolve()) and env["MSDA_WIDGETS_THEME"] == "dark"
    cmd, env = cli.voila_command(None, 8866, "light", open_browser=True)
    assert "--no-browser" not in cmd and "MSDA_WIDGETS_DATA" not in env


def test_app_notebook_ships_inside_the_package_and_shows_no_prose():
    import nbformat
    nb = nbformat.read(cli.APP_NOTEBOOK, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["code"]  # sources are stripped: a markdown cell would show
    assert "Dashboard(" in nb.cells[0].source and "MSDA_WIDGETS_DATA" in nb.cells[0].source


def test_serve_refuses_a_missing_file(capsys):
    assert cli.main(["serve", "/no/such/file.csv"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_detect_runs_the_engine_and_writes_only_when_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["detect", "--epochs", "2", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "ground truth: 12 injected events" in out and "threshold" in out
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["detect", "--epochs", "1", "--out", "a.csv"]) == 0
    assert (tmp_path / "a.csv").read_text().startswith("timestamp,score,top_sensor")


def test_detect_reports_bad_data_plainly(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\nx,y\n")
    assert cli.main(["detect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msda-widgets: ") and "Traceback" not in err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "msda_widgets.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "serve" in out.stdout


def test_resolve_data():
    df = pd.DataFrame({"a": [1.0]})
    assert resolve_data("", {}) is None
    assert resolve_data(" df ", {"df": df}) is df
    with pytest.raises(ValueError, match="neither a variable"):
        resolve_data("nothing_here.csv", {})
    with pytest.raises(ValueError, match="one name or one path"):
        resolve_data("a b", {})


class FakeIPython:
    def __init__(self, ns):
        self.user_ns = ns
        self.magics = {}

    def register_magic_function(self, func, magic_kind, magic_name):
        self.magics[(magic_kind, magic_name)] = func


def test_load_ext_registers_percent_msda(monkeypatch):
    import msda_widgets
    ip = FakeIPython({})
    msda_widgets.load_ipython_extension(ip)
    magic = ip.magics[("line", "msda")]
    dash = magic("")
    assert isinstance(dash, Dashboard) and dash.state.series.n_rows > 0
    bundle = dash._repr_mimebundle_()  # a cell ending in %msda displays the app widget
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.widget.model_id


def test_msda_magic_on_a_dataframe_variable():
    from msda_widgets import datasets
    df = datasets.make_sensors(n_steps=2000, n_sensors=3, seed=2).data
    dash = msda_magic("mine", {"mine": df})
    assert dash.state.series.sensors == tuple(df.columns)
