"""Every image container a loader returns has a content identity for the run key and the
embedding cache: ARO's cropped regions (file bytes and box) and Winoground's hub cells."""

from __future__ import annotations

from harness.datasets.compositional import CroppedImages
from harness.datasets.identity import images_digest
from harness.datasets.winoground import HFCells


def test_cropped_regions_are_keyed_by_file_content_and_box(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"first image")
    b.write_bytes(b"second image")
    images = CroppedImages([a, b], [(0, 0, 4, 4), None])
    before = images_digest(images, cache_dir=tmp_path / "cache")
    assert images_digest(images, cache_dir=tmp_path / "cache") == before
    assert images_digest(CroppedImages([a, b], [(0, 0, 4, 5), None]), cache_dir=tmp_path / "cache") != before
    b.write_bytes(b"other bytes, same name")
    assert images_digest(images, cache_dir=tmp_path / "cache") != before


def test_hub_cells_are_keyed_by_origin_and_cells():
    cells = HFCells(table=None, cells=[(0, "image_0"), (0, "image_1")], origin="facebook/winoground@rev/test")
    same = HFCells(table=None, cells=[(0, "image_0"), (0, "image_1")], origin="facebook/winoground@rev/test")
    swapped = HFCells(table=None, cells=[(0, "image_1"), (0, "image_0")], origin="facebook/winoground@rev/test")
    assert images_digest(cells) == images_digest(same) != images_digest(swapped)
