"""The names of a model's outputs: given by the person, read from the file, or assumed."""

from __future__ import annotations

from kai.errors import InvalidInput

IMAGENET_NUM_CLASSES = 1000


def resolve_class_names(
    given: list[str] | None, num_classes: int, notes: list[str], *, found: list[str] | None = None
) -> list[str]:
    """The class names to record, in output order; empty when nothing says them.

    Args:
        given: Names from the import options; they win.
        num_classes: Outputs of the model.
        notes: Where to say what was assumed.
        found: Names the file itself carries, if any.

    Raises:
        InvalidInput: Given names do not number ``num_classes``.
    """
    if given:
        _check_count(given, num_classes, "The class names given")
        return list(given)
    if found and len(found) == num_classes:
        notes.append("Class names read from the model file")
        return list(found)
    if num_classes == IMAGENET_NUM_CLASSES:
        # timm carries ImageNet's names; it is imported here, not with the API.
        from timm.data.imagenet_info import ImageNetInfo

        notes.append("No class names given; the 1000 outputs are taken as ImageNet-1k's classes")
        info = ImageNetInfo()
        return [info.index_to_description(index) for index in range(num_classes)]
    notes.append(f"No class names given; the {num_classes} outputs are known by index only")
    return []


def _check_count(names: list[str], num_classes: int, what: str) -> None:
    if len(names) != num_classes:
        raise InvalidInput(
            f"{what} are {len(names)}, but the model has {num_classes} outputs",
            details={"field": "classNames", "given": len(names), "outputs": num_classes},
        )
