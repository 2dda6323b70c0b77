"""YAML for the files people write by hand (the config, the retention rules): a key given twice is an error.

PyYAML, like most YAML parsers, keeps the last of two equal keys in one mapping and drops
the first without a word.  In an archive's config that silently removes a whole
``sources:`` list or a second ``web:`` section; in a rules file, a ``period:``.  The
loader here refuses such a file and names both lines.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives one key twice; ``line`` is the second occurrence (1-based)."""

    def __init__(self, key: Any, mark: yaml.Mark, first: int) -> None:
        self.line = mark.line + 1
        #: read by callers that report YAML errors as "at line L, column C: problem"
        self.problem_mark = mark
        self.problem = f"the key {key!r} is given twice (first on line {first}); keep one"
        super().__init__(f"line {self.line}: {self.problem}")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (:class:`DuplicateKeyError`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Only keys written in this mapping count: a key that overrides one merged in with
        # ``<<: *base`` is what merge keys are for.
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own message
            if first is not None:
                raise DuplicateKeyError(key, key_node.start_mark, first)
            seen[key] = line
        self.flatten_mapping(node)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, StrictLoader.construct_mapping)


def load(text: str) -> Any:
    """Parse hand-written YAML strictly; raises yaml.YAMLError (DuplicateKeyError among them)."""
    return yaml.load(text, Loader=StrictLoader)
