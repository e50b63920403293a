"""``vlbench data describe``: what a split holds and whether it can be used."""

from __future__ import annotations

from typing import Any

from harness.datasets.base import DatasetError, DatasetMeta, DatasetRequest, ImageSet


def unreadable_images(images: ImageSet, limit: int = 5) -> tuple[int, list[str]]:
    """Open every image header (cheap) and fully decode none; count the files PIL rejects."""
    from PIL import Image, UnidentifiedImageError

    bad: list[str] = []
    count = 0
    for path in images.paths:
        try:
            with Image.open(path) as im:
                im.verify()
        except (OSError, UnidentifiedImageError, SyntaxError):
            count += 1
            if len(bad) < limit:
                bad.append(path.name)
    return count, bad


def describe(meta: DatasetMeta, split: str, data_root: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"dataset": meta.name, "split": split, "source": meta.source,
                              "license": meta.license}
    for task in meta.tasks:
        try:
            data = meta.load(DatasetRequest(split=split, task=task, data_root=data_root))
        except DatasetError as exc:
            report.update(usable=False, error=str(exc))
            return report
        prefix = task.value
        report[f"{prefix}.images"] = len(data.images)
        if hasattr(data, "captions"):
            report[f"{prefix}.captions"] = len(data.captions)
        else:
            report[f"{prefix}.classes"] = len(data.classnames)
            report[f"{prefix}.templates"] = len(data.templates)
        bad, examples = unreadable_images(data.images)
        report[f"{prefix}.unreadable_images"] = f"{bad}" + (f" (e.g. {', '.join(examples)})" if examples else "")
        for key, value in data.info.items():
            if key.startswith(("dropped", "bad", "missing")) and value:
                report[f"{prefix}.{key}"] = value
        report[f"{prefix}.fingerprint"] = data.fingerprint
        if bad:
            report["usable"] = False
            report["error"] = f"{bad} image files cannot be read"
            return report
    report["usable"] = True
    return report
