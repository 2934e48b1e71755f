"""What the structured-config schemas share (models/config.py, evaluation/config.py,
export/config.py).

Hydra composes conf/ onto typed dataclasses registered in its ConfigStore, so OmegaConf checks
the types (an int stays an int, a word where a number belongs fails at composition). What a type
cannot say, a minimum or a set of allowed words, is declared beside the type with `setting()`
and checked by `check_values` once the config is composed. `undeclared` finds keys that no
schema declares (Hydra's `+key=value` adds them past the schema). plumbing.hydra_cli.one_line
turns OmegaConf's type errors into the line a user reads: `trainer.max_epochs='abc': expected an integer`.

A yaml option attaches its schema first in its defaults list (`- /schema/model/tcn@_here_`,
then `_self_`); `register` stores the schemas under the group `schema/`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from plumbing.hydra_cli import UserError


def setting(default: Any = MISSING, *, min: float | None = None, choices: tuple | None = None):
    """A dataclass field with the value rules its type cannot express: `min` (inclusive, None
    passes) and `choices` (the allowed values, compared with their type: 1 is not true)."""
    rules = {k: v for k, v in (("min", min), ("choices", choices)) if v is not None}
    return dataclasses.field(default=default, metadata=rules)


def register(name: str, node: type, group: str = "") -> None:
    """Store a schema as `schema/<group>/<name>` for the yaml defaults lists."""
    ConfigStore.instance().store(group=f"schema/{group}".rstrip("/"), name=name, node=node)


def typed_overrides() -> list[str] | None:
    """The overrides typed on the command line of this Hydra run (None when the config was
    composed outside one, as tests do)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return None


def override_key(override: str) -> str:
    """`+data.features=[a,b]` -> `data.features`."""
    return override.lstrip("+~").split("=", 1)[0]


def _shown(value: Any) -> str:
    """A value as it is typed on the command line (true, not True)."""
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return str(value)


def _schema_fields(node: DictConfig) -> dict[str, dataclasses.Field]:
    kind = OmegaConf.get_type(node)
    return {f.name: f for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else {}


def _dicts(node: Any, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every DictConfig under `node` (itself first) with its dotted prefix; Hydra's own `hydra`
    node (there when composed with return_hydra_config) is left out."""
    if not isinstance(node, DictConfig):
        return
    yield prefix, node
    for key in node.keys():
        if prefix == "" and key == "hydra":
            continue
        if not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key):
            yield from _dicts(node._get_node(key), f"{prefix}{key}.")


def check_values(cfg: DictConfig) -> None:
    """UserError for the first value that breaks its field's `min` or `choices`."""
    for prefix, node in _dicts(cfg):
        for key, field in _schema_fields(node).items():
            rules = field.metadata
            if not rules or key not in node or OmegaConf.is_missing(node, key):
                continue
            value = node[key]
            if value is None:
                continue
            if "min" in rules and value < rules["min"]:
                raise UserError(f"{prefix}{key}={value!r}: must be >= {rules['min']:g}")
            if "choices" in rules and not any(value == c and type(value) is type(c) for c in rules["choices"]):
                *first, last = [_shown(c) for c in rules["choices"]]
                raise UserError(f"{prefix}{key}={value!r}: expected {', '.join(first)} or {last}")


def undeclared(cfg: DictConfig) -> list[str]:
    """Dotted keys inside schema nodes that their schema does not declare (added with `+`);
    a schema whose class sets `OPEN` takes any key (e.g. Lightning's Trainer arguments)."""
    out = []
    for prefix, node in _dicts(cfg):
        fields = _schema_fields(node)
        if fields and not getattr(OmegaConf.get_type(node), "OPEN", False):
            out += [f"{prefix}{key}" for key in node.keys() if key not in fields]
    return out
