"""Layer groups for graph formats: the layers with weights, in order, cut into a few runs.

Training freezes a model from the input side and unfreezes towards the head,
so the groups run ``stem``, ``stage1`` ... and end with ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence

from kai.models.formats.base import LayerGroup

MAX_BODY_GROUPS = 4


def group_layers(layers: Sequence[tuple[str, int]], head: str | None) -> list[LayerGroup]:
    """Groups over ``(layer name, parameter count)`` pairs in graph order.

    Args:
        layers: The layers that hold weights, from the input to the output.
        head: The name of the classification layer; the last layer when None.
    """
    weighted = [(name, count) for name, count in layers if count > 0]
    if not weighted:
        return []
    head_name = head if head in {name for name, _ in weighted} else weighted[-1][0]
    body = [(name, count) for name, count in weighted if name != head_name]
    head_count = sum(count for name, count in weighted if name == head_name)
    groups = [_group(f"stage{index}", run) for index, run in enumerate(_runs(body))]
    if groups:
        groups[0] = groups[0].model_copy(update={"name": "stem"})
    return [*groups, LayerGroup(name="head", modules=[head_name], parameter_count=head_count)]


def _runs(body: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    if not body:
        return []
    count = min(MAX_BODY_GROUPS, len(body))
    size = -(-len(body) // count)
    return [body[start : start + size] for start in range(0, len(body), size)]


def _group(name: str, run: list[tuple[str, int]]) -> LayerGroup:
    return LayerGroup(
        name=name, modules=[layer for layer, _ in run], parameter_count=sum(c for _, c in run)
    )
