"""Project files (pam_explorer.data.project): the fixture project reads back exactly what was
written, and every bad input of issue 28 is one error line naming the file and the row, column
or key (the networks' errors: tests/zoo/test_user_nets.py; through the CLI: tests/cli/test_project_cli.py)."""
from __future__ import annotations

import csv
import logging
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import DataError, DataMissing, PamError
from pam_explorer.data import get_preset, load_preset_data, read_project
from pam_explorer.data.presets import task_targets
from tests.project_fixture import NAMES, SPLITS, TOML, grids, make_project, rewrite_csv, write_toml


@pytest.fixture()
def project(tmp_path):
    return make_project(tmp_path / "proj")


def test_fixture_reads_back_its_pictures_labels_and_split(project):
    p = read_project(project)
    assert p.name == str(project) and get_preset(str(project)) is p  # the path resolves again
    assert p.title == "fixture" and p.task_names == ("A", "B") and p.label_names == NAMES
    assert p.in_channels == 1 and p.image_size == 56 and p.split_sizes() == SPLITS
    splits = load_preset_data(str(project))
    pics, labels = grids(sum(SPLITS.values()), seed=0)  # the independent reference: what was written
    assert torch.equal(splits["train"].images[:, 0], torch.from_numpy(pics[:160]).float() / 255)
    assert torch.equal(splits["test"].labels, torch.from_numpy(labels[200:]).float())
    val_b = task_targets(splits["val"].labels, p, "B")
    assert torch.equal(val_b, torch.from_numpy(labels[160:200, 5:]).float())


def test_caps_subsample_a_split_with_a_seed(project):
    small = load_preset_data(str(project), DataConfig(n_train=50, n_val=40, n_test=40, seed=3))
    again = load_preset_data(str(project), DataConfig(n_train=50, n_val=40, n_test=40, seed=3))
    assert len(small["train"]) == 50 and torch.equal(small["train"].images, again["train"].images)
    assert torch.equal(small["val"].images, load_preset_data(str(project))["val"].images)  # not capped


def test_content_keys_follow_labels_and_networks(tmp_path):
    f = make_project(tmp_path / "p", nets=True)
    before = read_project(f)
    rewrite_csv(f.parent, lambda rows: rows[1].__setitem__(2, "1" if rows[1][2] == "0" else "0"))
    key_before = before.content_key()
    after = read_project(f)
    key_after = after.content_key()
    assert after.data_key != before.data_key and key_after != key_before
    net = f.parent / "nets" / "A.safetensors"
    raw = bytearray(net.read_bytes())
    raw[-4:] = bytes(255 - b for b in raw[-4:])
    net.write_bytes(bytes(raw))
    os.utime(net, ns=(time.time_ns() + 10**9,) * 2)  # changes are noticed by size and modification time
    assert read_project(f).content_key() != key_after  # a network's bytes count too


# --------------------------------------------------------------------------- bad input
def expect(exc_type, *needles):
    def check(excinfo):
        message = str(excinfo.value)
        assert "\n" not in message, message
        for n in needles:
            assert n in message, (n, message)
    return pytest.raises(exc_type), check


def raises(exc_type, fn, *needles):
    with pytest.raises(exc_type) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, PamError), message
    for n in needles:
        assert n in message, (n, message)
    return message


def test_missing_project_file(tmp_path):
    raises(DataMissing, lambda: read_project(tmp_path / "nope.toml"), "nope.toml", "does not exist")


def test_missing_csv(project):
    (project.parent / "labels.csv").unlink()
    raises(DataMissing, lambda: read_project(project), "labels.csv", "does not exist")


def test_csv_without_path_column(project):
    rewrite_csv(project.parent, lambda rows: rows[0].__setitem__(0, "file"))
    raises(DataError, lambda: read_project(project), "labels.csv", "no 'path' column")


def test_unknown_label_column(project):
    write_toml(project.parent, TOML.replace('"four"]', '"fourr"]'))
    raises(DataError, lambda: read_project(project), "pam.toml", "tasks.A.labels", "'fourr'",
           "not a label column of labels.csv")


def test_non_binary_label_value(project):
    rewrite_csv(project.parent, lambda rows: rows[7].__setitem__(2 + 3, "2"))  # column "three", row 7
    raises(DataError, lambda: read_project(project), "labels.csv row 7 (line 8), column 'three'",
           "'2' is not 0 or 1", "only binary label columns are supported")


def test_unreadable_picture(project):
    (project.parent / "pictures" / "0004.png").write_bytes(b"not a png")
    raises(DataError, lambda: read_project(project), "labels.csv row 5", "0004.png", "cannot be read")


def test_missing_picture(project):
    (project.parent / "pictures" / "0004.png").unlink()
    raises(DataMissing, lambda: read_project(project), "labels.csv row 5", "0004.png", "does not exist")


def test_wrong_picture_size_without_resize_then_with_it(project):
    pic = project.parent / "pictures" / "0009.png"
    Image.open(pic).resize((60, 60)).save(pic)
    raises(DataError, lambda: read_project(project), "labels.csv row 10", "0009.png", "60x60 pixels",
           "image_size is 56", "resize = true")
    write_toml(project.parent, TOML.replace("channels = 1", "channels = 1\nresize = true"))
    assert read_project(project).split_sizes() == SPLITS


def test_picture_path_outside_the_images_folder(project):
    rewrite_csv(project.parent, lambda rows: rows[3].__setitem__(0, "../labels.csv"))
    raises(DataError, lambda: read_project(project), "labels.csv row 3", "outside the images folder")


def test_fewer_than_two_tasks(project):
    write_toml(project.parent, TOML.split("[tasks.B]")[0])
    raises(DataError, lambda: read_project(project), "pam.toml", "1 task(s) (A)", "at least 2")


def test_task_without_labels(project):
    write_toml(project.parent, TOML.replace('["five", "six", "seven", "eight", "nine"]', "[]"))
    raises(DataError, lambda: read_project(project), "pam.toml", "tasks.B.labels is empty")


def test_split_column_required_unless_seeded(project, caplog):
    rewrite_csv(project.parent, lambda rows: [r.pop(1) for r in rows])
    raises(DataError, lambda: read_project(project), "labels.csv", "no 'split' column", 'split = "seeded"')
    write_toml(project.parent, TOML.replace('images = "pictures"', 'images = "pictures"\nsplit = "seeded"'))
    with caplog.at_level(logging.WARNING):
        p = read_project(project)
    assert sum(p.split_sizes().values()) == 240 and p.split_sizes()["test"] == 24
    assert "may land in val or test" in caplog.text


def test_bad_split_value_and_an_empty_split(project):
    rewrite_csv(project.parent, lambda rows: rows[2].__setitem__(1, "training"))
    raises(DataError, lambda: read_project(project), "labels.csv row 2 (line 3), column 'split'",
           "'training'")
    def no_val(rows):
        for r in rows[1:]:
            r[1] = "train" if r[1] in ("val", "training") else r[1]
    rewrite_csv(project.parent, no_val)
    raises(DataError, lambda: read_project(project), "labels.csv", "no picture has split 'val'")


def test_unknown_key_and_bad_values(project):
    write_toml(project.parent, "colour = 3\n" + TOML)
    raises(DataError, lambda: read_project(project), "pam.toml", "unknown key 'colour'")
    write_toml(project.parent, TOML.replace("channels = 1", "channels = 2"))
    raises(DataError, lambda: read_project(project), "pam.toml", "channels must be 1 (grey) or 3 (RGB)")
    write_toml(project.parent, TOML.replace("image_size = 56", 'image_size = "56"'))
    raises(DataError, lambda: read_project(project), "pam.toml", "image_size must be an integer")
    write_toml(project.parent, "name = [")
    raises(DataError, lambda: read_project(project), "pam.toml is not a valid TOML file")


# --------------------------------------------------------------------------- NPZ
def write_npz(root, **arrays):
    np.savez(root / "data.npz", **arrays)
    return write_toml(root, TOML.replace('csv = "labels.csv"\nimages = "pictures"', 'npz = "data.npz"'))


def npz_arrays(n=30):
    pics, labels = grids(n, seed=1)
    split = np.array(["train"] * (n - 10) + ["val"] * 5 + ["test"] * 5)
    return {"images": pics[:, None], "labels": labels, "split": split, "label_names": np.array(NAMES)}


def test_npz_project_keeps_float_pictures(tmp_path):
    root = tmp_path / "n"
    root.mkdir()
    arrays = npz_arrays()
    floats = (arrays["images"] / 255.0).astype(np.float32) ** 2  # not a multiple of 1/255: no re-quantising
    f = write_npz(root, **{**arrays, "images": floats})
    splits = load_preset_data(str(f))
    assert torch.equal(splits["train"].images, torch.from_numpy(floats[:20]))
    assert read_project(f).label_names == NAMES


def test_npz_with_mismatched_lengths(tmp_path):
    root = tmp_path / "n"
    root.mkdir()
    arrays = npz_arrays()
    f = write_npz(root, **{**arrays, "labels": arrays["labels"][:-1]})
    raises(DataError, lambda: read_project(f), "data.npz", "images 30", "labels 29", "one row per picture")


def test_npz_bad_label_and_object_arrays(tmp_path):
    root = tmp_path / "n"
    root.mkdir()
    arrays = npz_arrays()
    bad = arrays["labels"].copy()
    bad[4, 6] = 3
    f = write_npz(root, **{**arrays, "labels": bad})
    raises(DataError, lambda: read_project(f), "data.npz", "labels[4, 6] = 3", "not 0 or 1")
    f = write_npz(root, **{**arrays, "label_names": np.array(list(NAMES), dtype=object)})
    raises(DataError, lambda: read_project(f), "data.npz", "label_names", "Python objects")


def test_csv_written_by_hand_with_a_bom_and_crlf(tmp_path):
    root = tmp_path / "h"
    make_project(root)
    text = (root / "labels.csv").read_text()
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert read_project(root / "pam.toml").split_sizes() == SPLITS
    with (root / "labels.csv").open(newline="", encoding="utf-8-sig") as fh:
        assert next(csv.reader(fh))[0] == "path"
