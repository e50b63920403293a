"""Failures that name their file and the fix, in one line: damaged checkpoints given to
``--weights``, decompression bombs, JPEGs cut short; and options that must be refused."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import main
from harness.datasets.images import ImageDecodeError, load_rgb


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("vlbench: error: ") and "internal error" not in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ --weights of the wrong bytes

def random_bytes(path: Path, n: int = 4096) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def pickled_payload(path: Path) -> Path:
    """A torch.save'd pickle that calls os.system on load: weights_only refuses it."""
    import os

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"w": Evil()}, path)
    return path


RUN = ["run", "--dataset", "synthetic", "--task", "retrieval", "--limit", "10", "--workers", "0"]


@pytest.mark.parametrize("model", ["tiny-clip-synth", "fusion-late-synth", "open_clip:ViT-S-32"])
@pytest.mark.parametrize("make", ["random", "short", "pickle"])
def test_unreadable_weights_name_the_file(capsys, tmp_path, model, make):
    path = {"random": lambda: random_bytes(tmp_path / "w.safetensors"),  # SafetensorError: header too large
            "short": lambda: random_bytes(tmp_path / "w.bin", 5),
            "pickle": lambda: pickled_payload(tmp_path / "w.pt")}[make]()
    code, _, err = run_cli(capsys, *RUN, "--model", model, "--weights", str(path), "--results", str(tmp_path / "r"))
    line = one_error_line(err)
    assert code == 2 and f"{model}: {path} is not a readable checkpoint" in line, line
    assert "check that --weights points at this model's checkpoint" in line
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


def test_torch_unpickling_error_is_cut_to_its_first_line(tmp_path):
    from harness.core.interfaces import WeightsUnavailableError
    from harness.models.weights import load_torch_state

    path = pickled_payload(tmp_path / "evil.pt")
    with pytest.raises(WeightsUnavailableError) as exc:
        load_torch_state(path, "efficientnet-lite0")
    assert "\n" not in str(exc.value) and "UnpicklingError" in str(exc.value) and str(path) in str(exc.value)


def test_missing_weights_path_says_to_check_the_path_not_to_retrain(capsys, tmp_path):
    code, _, err = run_cli(capsys, *RUN, "--model", "tiny-clip-synth", "--weights", str(tmp_path / "nope.st"),
                           "--results", str(tmp_path / "r"))
    line = one_error_line(err)
    assert code == 2 and str(tmp_path / "nope.st") in line and "does not exist" in line
    assert "--weights path" in line and "train_tiny_clip" not in line


# ------------------------------------------------------------------ huge images

def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid-looking PNG of ``width`` x ``height`` (greyscale) with one tiny IDAT: Pillow's
    size check runs at open, so the pixels never need to exist."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_names_the_file_and_the_limit(tmp_path, monkeypatch):
    path = png_header_only(tmp_path / "huge.png", 20000, 20000)
    monkeypatch.delenv("VLBENCH_MAX_IMAGE_PIXELS", raising=False)
    with pytest.raises(ImageDecodeError) as exc:
        load_rgb(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: image too large to decode safely") and "400000000 pixels" in msg
    assert "VLBENCH_MAX_IMAGE_PIXELS" in msg and "\n" not in msg


def test_pixel_limit_can_be_raised_and_lowered(tmp_path, monkeypatch):
    from PIL import Image

    from harness.datasets.base import DatasetError

    small = tmp_path / "small.png"
    Image.new("RGB", (40, 40), (1, 2, 3)).save(small)
    monkeypatch.setenv("VLBENCH_MAX_IMAGE_PIXELS", "500")  # refused above 2 x 500 = 1000 < 1600
    with pytest.raises(ImageDecodeError, match="small.png: image too large"):
        load_rgb(small)
    monkeypatch.setenv("VLBENCH_MAX_IMAGE_PIXELS", "2000")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert load_rgb(small).getpixel((0, 0)) == (1, 2, 3)
    monkeypatch.setenv("VLBENCH_MAX_IMAGE_PIXELS", "none")
    assert load_rgb(small).size == (40, 40)
    # the huge header now passes the size check and fails later, on its missing pixels, still named
    with pytest.raises(ImageDecodeError, match="huge.png: cannot decode"):
        load_rgb(png_header_only(tmp_path / "huge.png", 20000, 20000))
    monkeypatch.setenv("VLBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DatasetError, match="VLBENCH_MAX_IMAGE_PIXELS='lots'"):
        load_rgb(small)


# ------------------------------------------------------------------ JPEG cut short, end marker appended

def photo_jpeg(seed: int = 0, size: int = 64) -> bytes:
    from PIL import Image

    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_jpeg_cut_in_half_with_an_end_marker_warns(tmp_path):
    data = photo_jpeg()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    with pytest.warns(UserWarning, match=r"cut\.jpg: JPEG data ends early"):
        im = load_rgb(cut)
    assert im.getpixel((63, 63)) == (128, 128, 128)  # the grey fill the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_rgb(whole)  # the intact file: no warning


def test_flat_grey_photo_not_taken_for_truncation(tmp_path):
    """Only JPEG fill counts: a PNG (or a JPEG whose last rows are not exactly 128) is quiet."""
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.new("RGB", (32, 32), (128, 128, 128)).save(grey)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_rgb(grey)


# ------------------------------------------------------------------ options that used to pass unnoticed

@pytest.mark.parametrize("argv,words", [
    (["--model", "tiny-clip-random", "--workers", "-2"], "--workers must be 0 or more"),
    (["--model", "tiny-clip-random", "--rerank-k", "-3"], "--rerank-k must be 0 or more, got -3"),
    (["--model", "fusion-xattn-synth", "--rerank-k", "-3"], "--rerank-k must be 0 or more, got -3"),
    (["--model", "tiny-clip-random", "--rerank-k", "5"], "tiny-clip-random is a dual encoder"),
])
def test_bad_options_are_refused_before_any_work(capsys, tmp_path, monkeypatch, argv, words):
    from harness.run import runner

    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("the run started"))
    code, _, err = run_cli(capsys, *RUN, *argv, "--results", str(tmp_path))
    assert code == 2 and words in one_error_line(err)


def test_sweep_refuses_negative_workers(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sweep", "--suite", "default", "--workers", "-1", "--results", str(tmp_path))
    assert code == 2 and "--workers must be 0 or more" in one_error_line(err)
