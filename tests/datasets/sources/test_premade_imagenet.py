"""ImageNet from an ILSVRC-2012 folder under an import root."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_caches import png_bytes

from kai.config import Settings
from kai.datasets.sources import PremadeOptions, open_premade, resolve_request
from kai.db.tables import Split
from kai.errors import InvalidInput

SYNSETS = "n01440764 tench, Tinca tinca\nn02012849 crane\nn03126707 crane\n"


def ilsvrc_folder(root: Path) -> Path:
    base = root / "ILSVRC"
    (base / "LOC_synset_mapping.txt").parent.mkdir(parents=True)
    (base / "LOC_synset_mapping.txt").write_text(SYNSETS)
    for n, wnid in enumerate(("n01440764", "n02012849", "n03126707")):
        for i in range(2):
            path = base / "Data/CLS-LOC/train" / wnid / f"{wnid}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(n * 10 + i))
    val = base / "Data/CLS-LOC/val"
    val.mkdir(parents=True)
    for i in range(2):
        (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(png_bytes(50 + i))
    rows = "".join(
        f"ILSVRC2012_val_{i:08d},{w} 1 2 3 4\n" for i, w in enumerate(("n01440764", "n02012849"))
    )
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows)
    return root


def test_ilsvrc_layout_gets_readable_names(settings: Settings, tmp_path: Path) -> None:
    root = ilsvrc_folder(tmp_path / "imagenet")
    settings.import_roots = [tmp_path]
    request = resolve_request(f"imagenet:{root}", PremadeOptions())
    with open_premade(request, settings) as (opened, layout):
        labels = {(image.label, image.split) for image in opened.images}
        assert opened.classes == ["tench", "crane (n02012849)", "crane (n03126707)"]
        assert ("tench", Split.VAL) in labels and ("crane (n02012849)", Split.VAL) in labels
        assert len(layout.files) == 8
        assert all(image.metadata["wnid"].startswith("n") for image in opened.images)


def test_imagenet_path_must_be_under_an_import_root(settings: Settings, tmp_path: Path) -> None:
    root = ilsvrc_folder(tmp_path / "imagenet")
    settings.import_roots = [tmp_path / "elsewhere"]
    request = resolve_request(f"imagenet:{root}", PremadeOptions())
    opening = open_premade(request, settings)
    with pytest.raises(InvalidInput, match="outside the allowed import roots"), opening:
        pass
