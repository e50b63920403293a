"""Issue 22, item 2: a part (SugarCrepe, ARO) or piece (VALSE) file that is valid JSON of the
wrong shape, or holds no entries, fails the load naming the file; before the fix it added
nothing and ``acc`` became the mean of the other parts, still labelled ``test``."""

from __future__ import annotations

import json

import pytest

from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from harness.datasets.valse import PARTS as VALSE_PIECES
from tests.test_caption_selection import _aro, _image, _sugarcrepe

CS = TaskKind.CAPTION_SELECTION


def load(name, split, root):
    return DATASETS.get(name).load(DatasetRequest(split, CS, data_root=str(root)))


def _valse_all_pieces(root):
    folder = root / "valse"
    _image(folder / "images" / "a.jpg", "red")
    (folder / "data").mkdir(parents=True)
    for piece in VALSE_PIECES:
        (folder / "data" / f"{piece}.json").write_text(json.dumps({f"{piece}_0": {
            "dataset": "x", "image_file": "a.jpg", "caption": "a red dog", "foil": "a blue dog",
            "mturk": {"foil": 0, "caption": 3, "other": 0}}}))
    return folder / "data"


def test_valse_piece_that_is_a_list_fails_naming_the_file(tmp_path):
    data = _valse_all_pieces(tmp_path)
    assert len(load("valse", "test", tmp_path).items) == 11
    piece = data / "relations.json"
    piece.write_text(json.dumps([json.loads(piece.read_text())["relations_0"]]))
    with pytest.raises(DatasetError, match=rf"^{piece}: expected a JSON object of entries \(.*\), got list$"):
        load("valse", "test", tmp_path)


@pytest.mark.parametrize("payload, got", [("42", "got int 42"), ("{}", "holds no entries"),
                                          ("[]", "got list"), ("null", "got null"), ('"x"', "got str 'x'")])
def test_sugarcrepe_part_of_the_wrong_shape_fails_naming_the_file(tmp_path, payload, got):
    root = _sugarcrepe(tmp_path)
    part = root / "sugarcrepe" / "swap_att.json"
    part.write_text(payload)
    with pytest.raises(DatasetError, match=rf"^{part}: .*{got}"):
        load("sugarcrepe", "test", root)


@pytest.mark.parametrize("payload, got", [('{"0": {}}', "expected a JSON list of entries"), ("[]", "holds no entries")])
def test_aro_part_of_the_wrong_shape_fails_naming_the_file(tmp_path, payload, got):
    root = _aro(tmp_path, with_order=False)
    part = root / "aro" / "visual_genome_attribution.json"
    part.write_text(payload)
    with pytest.raises(DatasetError, match=rf"^{part}: {got}"):
        load("aro", "vg_attribution", root)
