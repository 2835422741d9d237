from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cmal.state import atomic_write, load_npy, read_json, save_npy, write_json


def test_json_roundtrip_with_numpy_values(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json(path, {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": np.int64(4)})
    assert read_json(path) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": 4}


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"round": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write('{"round": 2, "half')
            raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"round": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def test_unserializable_object_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"f": object()})
    assert not os.listdir(tmp_path)


def test_npy_roundtrip_and_no_pickle(tmp_path):
    save_npy(tmp_path / "a.npy", np.arange(5))
    assert load_npy(tmp_path / "a.npy", "--x").tolist() == [0, 1, 2, 3, 4]
    assert isinstance(load_npy(tmp_path / "a.npy", "--x", mmap=True), np.memmap)
    with pytest.raises(ValueError, match="pickle"):
        save_npy(tmp_path / "o.npy", np.array([{}], dtype=object))
    np.save(tmp_path / "evil.npy", np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="--probs: cannot read .* without pickle"):
        load_npy(tmp_path / "evil.npy", "--probs")
    with pytest.raises(ValueError, match="--probs: file .* does not exist"):
        load_npy(tmp_path / "none.npy", "--probs")


def test_damaged_json_is_reported(tmp_path):
    (tmp_path / "r.json").write_text('{"a": ')
    with pytest.raises(ValueError, match="damaged"):
        read_json(tmp_path / "r.json")
    with pytest.raises(ValueError, match="does not exist"):
        read_json(tmp_path / "none.json")
