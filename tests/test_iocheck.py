"""caloforge.iocheck: no command writes over one of its inputs or over a file of another kind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from caloforge.errors import UserError
from caloforge.iocheck import check_io, sniff

SHIPPED_ONNX = Path(__file__).resolve().parents[1] / "src/caloforge/gan/default/generator.onnx"


def test_output_equal_to_an_input_by_path_link_or_inode_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(SHIPPED_ONNX, model)
    spellings = [model, tmp_path / "." / "m.onnx", Path(os.path.relpath(model))]
    (tmp_path / "link.h5").symlink_to(model)
    os.link(model, tmp_path / "hard.h5")                         # same inode, other name
    for out in [*spellings, tmp_path / "link.h5", tmp_path / "hard.h5"]:
        with pytest.raises(UserError, match="is also an input"):
            check_io(inputs=[model], files={out: "hdf5"})
    check_io(inputs=[model], files={tmp_path / "new.h5": "hdf5"})     # another file: fine


def test_a_tuned_models_bin_counts_as_an_input(tmp_path: Path) -> None:
    xml, binf = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_text("<?xml version='1.0'?><net name='g'></net>")
    binf.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match=r"model\.bin: is also an input"):
        check_io(inputs=[xml], files={binf: "hdf5"})


def test_outputs_inside_a_directory_are_checked_against_inputs(tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    out.mkdir()
    (out / "model.xml").write_text("<net/>")
    with pytest.raises(UserError, match=r"model\.xml: is also an input"):
        check_io(inputs=[out / "model.xml"], dirs={out: ("model.xml", "model.bin", "*.png")})
    (out / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UserError, match=r"ref\.png: is also an input"):
        check_io(inputs=[out / "ref.png"], dirs={out: ("*.png",)})
    check_io(inputs=[out / "model.xml"], dirs={tmp_path / "other": ("model.xml",)})


def test_existing_output_of_another_kind_is_refused(tmp_path: Path) -> None:
    import h5py

    onnx = tmp_path / "x.h5"
    shutil.copy(SHIPPED_ONNX, onnx)
    with pytest.raises(UserError, match=r"x\.h5: exists and is not an HDF5 file \(it holds an ONNX"):
        check_io(files={onnx: "hdf5"})
    st = tmp_path / "w.safetensors"
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(3, np.float32)}, str(st))
    with pytest.raises(UserError, match="safetensors"):
        check_io(files={st: "hdf5"})
    with pytest.raises(UserError, match="not a JSON file"):
        check_io(files={st: "json"})
    h5 = tmp_path / "old.h5"
    with h5py.File(h5, "w") as f:
        f["a"] = np.zeros(2)
    check_io(files={h5: "hdf5"})                                 # an older HDF5 output: replaced
    with pytest.raises(UserError, match="not a PNG"):
        check_io(files={h5: "png"})
    (tmp_path / "empty.h5").write_bytes(b"")
    check_io(files={tmp_path / "empty.h5": "hdf5"})
    (tmp_path / "b.json").write_text('{"a": 1}\n')
    check_io(files={tmp_path / "b.json": "json"})
    assert sniff(SHIPPED_ONNX) == "an ONNX model" and sniff(h5) == "HDF5"


def test_directory_spellings_and_bad_parents_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"newdir/: names a directory \(trailing '/'\)"):
        check_io(files={f"{tmp_path}/newdir/": "hdf5"})
    with pytest.raises(UserError, match="is a directory"):
        check_io(files={tmp_path: "hdf5"})
    with pytest.raises(UserError, match="does not exist"):
        check_io(files={tmp_path / "no" / "b.json": "json"})
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"afile/b\.json: .*afile is not a directory"):
        check_io(files={blocker / "b.json": "json"})
    with pytest.raises(UserError, match=r"afile: exists and is not a directory"):
        check_io(dirs={blocker: ()})
    with pytest.raises(UserError, match=r"afile/run/deeper: .*afile is not a directory"):
        check_io(dirs={blocker / "run" / "deeper": ()})
    check_io(dirs={tmp_path / "new" / "run": ()})               # missing parents may be created
    assert list(tmp_path.iterdir()) == [blocker]                 # a check creates nothing


def test_glob_characters_in_real_names_are_literal(tmp_path: Path) -> None:
    d = tmp_path / "run[1]"
    d.mkdir()
    model = d / "m*.onnx"
    shutil.copy(SHIPPED_ONNX, model)
    with pytest.raises(UserError, match="is also an input"):
        check_io(inputs=[model], files={d / "m*.onnx": "hdf5"})
    with pytest.raises(UserError, match="is also an input"):
        check_io(inputs=[model], dirs={d: ("*.onnx",)})
    check_io(inputs=[model], dirs={d: ("model.xml",)})
    other = d / "mXY.h5"
    other.write_bytes(b"")
    check_io(inputs=[other], files={d / "mX*.h5": "hdf5"})  # a file output's name is no pattern
