"""The Setup page opens a project file (issue 28) by path or as a zip, and takes uploaded networks
of any registered architecture with their options read off the file (issue 26 item 2); the
explorer, runs and export pages then work on the project. AppTest, like test_app.py."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from pam_explorer.core.config import RegroupConfig
from pam_explorer.data import read_project
from pam_explorer.regroup.project import Project
from tests.project_fixture import make_project
from tests.ui.apptest import fresh


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))
    return make_project(tmp_path / "proj", nets=True)


def open_project(at, source: str, **values):
    at.switch_page("ui/page_setup.py").run()
    at.radio(key="setup_source").set_value(source).run()
    for key, value in values.items():
        at.text_input(key=key).set_value(value).run()
    return at


def test_open_a_project_by_path_then_explore_it(project, runs_root):
    at = open_project(fresh(), "A project file (path)", project_path=str(project))
    at.button(key="open_project").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    setup = at.session_state["setup"]
    assert setup.preset == str(project) and setup.arch == "lenet5"
    assert setup.content == read_project(project).content_key()
    text = " ".join(m.value for m in at.markdown)
    assert "**Project** `fixture`" in text and "160 train" in text and "zero, one, two, three, four" in text
    at.switch_page("ui/page_explorer.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    alpha = at.select_slider[0].value
    groups = Project.open(project, setup.mi, use_cache=False).groups(RegroupConfig(alpha=alpha))
    shown = at.table[0].value
    for layer, g in groups.items():
        assert shown.loc[layer, "A+B"] == len(g.groups[("A", "B")])
    for page in ("ui/page_export.py", "ui/page_results.py", "ui/page_runs.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
    shown = " ".join(i.value for i in at.info)  # the Runs page: what the launch button would run
    assert f"experiment --project {project}" in shown


def test_a_bad_project_keeps_the_setup(project, runs_root):
    (project.parent / "labels.csv").write_text("file,split,zero\n")
    at = open_project(fresh(), "A project file (path)", project_path=str(project))
    at.button(key="open_project").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Project not opened" in errors and "labels.csv: no 'path' column" in errors
    assert at.session_state["setup"].preset == "digits-2task"


def test_a_project_zip_upload(project, runs_root):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in project.parent.rglob("*"):
            if f.is_file():
                zf.write(f, str(f.relative_to(project.parent)))
    at = open_project(fresh(), "A project zip (upload)")
    at.file_uploader(key="project_zip").upload("proj.zip", buf.getvalue())
    at.button(key="open_project").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    opened = Path(at.session_state["setup"].preset)
    assert opened.name == "pam.toml" and opened.parent.parent == runs_root / "projects"


def test_resnet18_upload_takes_width_and_stem_from_the_file(runs_root):
    """Issue 26 item 2: the committed mnist-2task ResNet-18s (width 1/8, small-input stem)."""
    assets = Path(__file__).resolve().parents[2] / "assets" / "mnist-2task" / "resnet18"
    at = fresh()
    at.switch_page("ui/page_setup.py").run()
    at.selectbox(key="setup_preset").set_value("mnist-2task").run()
    at.radio(key="checkpoints_mnist-2task").set_value("Upload a network file per task").run()
    assert {"lenet5", "resnet18", "resnet34", "vgg16"} <= set(at.selectbox(key="upload_arch").options)
    at.selectbox(key="upload_arch").set_value("resnet18").run()
    for i, t in enumerate("AB"):
        at.file_uploader[i].upload(f"{t}.safetensors", (assets / f"{t}.safetensors").read_bytes())
    at.number_input[0].set_value(32).run()
    at.button(key="apply_setup").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    setup = at.session_state["setup"]
    assert setup.arch == "resnet18" and setup.checkpoints.startswith("upload-")
    nets = at.session_state["uploaded_nets"][setup.checkpoints]
    assert [n.hparams for n in nets] == [{"width": 0.125, "small_input": True}] * 2
