"""Source ids: which repository holds a dataset, under which name and revision.

Written forms, one per repository:

    huggingface:ORG/NAME[:CONFIG][@REVISION]   a Hugging Face dataset repository
    kaggle:OWNER/SLUG[/versions/N]             a Kaggle dataset
    tfds:NAME[/CONFIG][:VERSION]               a TensorFlow Datasets builder
    imagenet:PATH                              an ILSVRC-2012 folder under an import root
    sample:textures                            the texture set made from scikit-image's photos
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from kai.errors import InvalidInput


class Repository(StrEnum):
    """Where a premade dataset comes from."""

    HUGGINGFACE = "huggingface"
    KAGGLE = "kaggle"
    TFDS = "tfds"
    IMAGENET = "imagenet"
    SAMPLE = "sample"


_PATTERNS: dict[Repository, re.Pattern[str]] = {
    Repository.HUGGINGFACE: re.compile(
        r"(?P<ref>[\w.-]+/[\w.-]+)(?::(?P<config>[\w.-]+))?(?:@(?P<revision>[\w./-]+))?"
    ),
    Repository.KAGGLE: re.compile(r"(?P<ref>[\w.-]+/[\w.-]+)(?:/versions/(?P<revision>\d+))?"),
    Repository.TFDS: re.compile(
        r"(?P<ref>[a-z0-9_]+)(?:/(?P<config>[\w.-]+))?(?::(?P<revision>\d+\.\d+\.\d+))?"
    ),
    Repository.IMAGENET: re.compile(r"(?P<ref>/.*)"),
    Repository.SAMPLE: re.compile(r"(?P<ref>textures)"),
}
_FORMS = {
    Repository.HUGGINGFACE: "huggingface:ORG/NAME[:CONFIG][@REVISION]",
    Repository.KAGGLE: "kaggle:OWNER/SLUG[/versions/N]",
    Repository.TFDS: "tfds:NAME[/CONFIG][:VERSION]",
    Repository.IMAGENET: "imagenet:/ABSOLUTE/PATH",
    Repository.SAMPLE: "sample:textures",
}


class SourceRef(BaseModel):
    """A dataset on one repository.

    Attributes:
        repository: The repository.
        reference: Its name there (``tanganke/dtd``), or a folder for ImageNet.
        config: A Hugging Face configuration or TFDS builder config.
        revision: A Hugging Face revision, Kaggle version number or TFDS version;
            None means the latest.
    """

    model_config = ConfigDict(frozen=True)

    repository: Repository
    reference: str
    config: str | None = None
    revision: str | None = None

    @property
    def source_id(self) -> str:
        """The written form, which :func:`parse_source_id` reads back."""
        ref, config, revision = self.reference, self.config, self.revision
        if self.repository is Repository.HUGGINGFACE:
            return f"huggingface:{ref}" + (f":{config}" if config else "") + _at(revision)
        if self.repository is Repository.KAGGLE:
            return f"kaggle:{ref}" + (f"/versions/{revision}" if revision else "")
        if self.repository is Repository.TFDS:
            suffix = (f"/{config}" if config else "") + (f":{revision}" if revision else "")
            return f"tfds:{ref}{suffix}"
        return f"{self.repository.value}:{ref}"


def _at(revision: str | None) -> str:
    return f"@{revision}" if revision else ""


def looks_like_source_id(text: str) -> bool:
    """Whether the text starts with a known repository prefix."""
    prefix, sep, _ = text.strip().partition(":")
    return bool(sep) and prefix.lower() in {item.value for item in Repository}


def parse_source_id(text: str) -> SourceRef:
    """Read a written source id.

    Raises:
        InvalidInput: An unknown repository, or an id not in its repository's form.
    """
    prefix, sep, rest = text.strip().partition(":")
    try:
        repository = Repository(prefix.lower())
    except ValueError as exc:
        raise InvalidInput(
            f"{text!r} names no known repository; use one of {', '.join(_FORMS.values())}",
            details={"field": "sourceDatasetId", "forms": list(_FORMS.values())},
        ) from exc
    match = _PATTERNS[repository].fullmatch(rest.strip()) if sep else None
    if match is None:
        raise InvalidInput(
            f"{text!r} is not a valid {repository.value} id; write it as {_FORMS[repository]}",
            details={"field": "sourceDatasetId", "form": _FORMS[repository]},
        )
    groups = match.groupdict()
    return SourceRef(
        repository=repository,
        reference=groups["ref"],
        config=groups.get("config"),
        revision=groups.get("revision"),
    )
