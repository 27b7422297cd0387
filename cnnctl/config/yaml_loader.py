"""Config: the YAML loaders every config and `--set` value is read with — PyYAML's safe loader (no tag builds a
Python object), bounded in depth and in values with aliases expanded, refusing a key given twice and turning a typed
scalar it cannot build into a YAML error at its line.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_CONFIG_DEPTH = 100  # nesting levels (mappings and lists), counting those reached through aliases
MAX_CONFIG_NODES = 200_000  # values after expanding every alias: `*a` counts the whole node it names


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.safe_load's loader (no tag can build a Python object) that refuses, while composing and before any
    value is built, nesting deeper than MAX_CONFIG_DEPTH, more than MAX_CONFIG_NODES values with every alias
    expanded (a few hundred bytes of nested aliases otherwise stand for billions of values) and an alias inside
    the node it names (a structure that contains itself).

    Counting is O(1) per event: an anchored node records its expanded size and height once, and each alias
    to it adds them.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0  # nesting of the node being composed
        self._deepest = 0  # deepest level reached, aliases expanded
        self._nodes = 0  # values composed so far, aliases expanded
        self._open: set[str] = set()  # anchors whose node is being composed
        self._anchored: dict[str, tuple[int, int]] = {}  # anchor → (expanded values, height)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"the alias *{event.anchor} is inside the node &{event.anchor} it names (a "
                    "recursive alias); configs must be trees",
                    event.start_mark,
                )
            values, height = self._anchored.get(event.anchor, (1, 0))
            self._count(values, self._depth + 1 + height, event)
            return super().compose_node(parent, index)
        self._depth += 1
        self._count(1, self._depth, event)
        anchor = event.anchor
        if anchor is None:
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        self._open.add(anchor)
        nodes_before, deepest_before, self._deepest = self._nodes, self._deepest, self._depth
        try:
            node = super().compose_node(parent, index)
        finally:
            self._open.discard(anchor)
            self._depth -= 1
        self._anchored[anchor] = (self._nodes - nodes_before + 1, self._deepest - self._depth - 1)
        self._deepest = max(self._deepest, deepest_before)
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # A typed scalar PyYAML cannot build (`!!int abc`, `!!bool maybe`, a 13th month, an integer of more digits
        # than Python converts) raises ValueError (KeyError for a bool) from inside PyYAML: make it a YAML error at
        # its line.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, KeyError) as exc:
            tag = str(node.tag).rsplit(":", 1)[-1]
            if isinstance(exc, KeyError) and tag != "bool":
                raise
            why = "true or false" if isinstance(exc, KeyError) else str(exc).splitlines()[0].split(";")[0][:160]
            shown = str(node.value)[:40] + ("..." if len(str(node.value)) > 40 else "")
            raise yaml.constructor.ConstructorError(
                None, None, f"'{shown}' is not a valid {tag} ({why})", node.start_mark
            ) from None

    def _count(self, values: int, depth: int, event: Any) -> None:
        self._nodes += values
        self._deepest = max(self._deepest, depth)
        if depth > MAX_CONFIG_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_CONFIG_DEPTH} levels (aliases expanded); configs are a few levels deep",
                event.start_mark,
            )
        if self._nodes > MAX_CONFIG_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_CONFIG_NODES:,} values once aliases are expanded (nested aliases "
                "multiply); write the values out or use fewer aliases",
                event.start_mark,
            )


class StrictSafeLoader(BoundedSafeLoader):
    """The bounded safe loader that also refuses a key given twice in one mapping, which YAML loaders otherwise
    settle silently by keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` overriding keys is what merges are for
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"'{key}' appears twice in the same mapping (first on line {first_line[key] + 1}); keep one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)
