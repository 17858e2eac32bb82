"""Editing a config file by key path, failing loudly when the key it names isn't there.

A test that builds its config with ``str.replace`` quietly stops testing what it says once the
example's text changes: the replace no longer matches and does nothing. ``edit_config`` reads
the TOML, edits it by key path and writes it back; every key it is asked to set, remove or
rename must exist, and every key it is asked to add must not, so a test's intent is explicit
and a stale edit is an error that names its key::

    edit_config(
        path,
        {"smtp.port": 2525, "segments.clergy.sequence[1].delay_business_days": -1},
        add={"smtp.ca_file": "/x/ca.pem"},  # a key the example only shows commented out
        remove=["imap.ca_file", "rules"],
        rename={"segments.clergy.label": "labell"},
    )

Key paths are TOML dotted keys with list indexes: ``sending.blackouts[0].end``,
``segments."Clergy Folk".label``. Values can be anything TOML holds (str, int, float, bool,
date, time, datetime, lists, tables), whether or not the config schema accepts them, so tests
of invalid values use it too. The file is rewritten without its comments.

For raw text (a test of a TOML syntax error), ``replace_once`` asserts that its text matched.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigKeyError",
    "dumps",
    "edit_config",
    "read_config",
    "replace_once",
    "write_config",
]


class ConfigKeyError(LookupError):
    """A key path that does not fit the config: a key to change that is absent, or a key to
    add that is already there."""

    def __str__(self) -> str:
        return str(self.args[0])


# --- key paths --------------------------------------------------------------------------------

_PART = re.compile(
    r"""
    (?:(?P<bare>[A-Za-z0-9_-]+)|"(?P<quoted>(?:[^"\\]|\\.)*)")  # a key
    (?P<indexes>(?:\[\d+\])*)                                  # then list indexes
    (?:\.|$)
    """,
    re.VERBOSE,
)

Step = str | int  # a table key, or a list index


def parse_path(path: str) -> list[Step]:
    """``'segments.clergy.sequence[1].delay_business_days'`` ->
    ``['segments', 'clergy', 'sequence', 1, 'delay_business_days']``."""
    steps: list[Step] = []
    position = 0
    while position < len(path):
        match = _PART.match(path, position)
        if match is None or match.end() == position:
            raise ValueError(f"{path!r} is not a key path (at character {position})")
        key = match["bare"]
        if key is None:
            key = tomllib.loads(f'k = "{match["quoted"]}"')["k"]  # TOML's own unescaping
        steps.append(key)
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", match["indexes"]))
        position = match.end()
    if not steps or path.endswith("."):
        raise ValueError(f"{path!r} is not a key path")
    return steps


def _describe(container: object) -> str:
    if isinstance(container, dict):
        return "keys there: " + (", ".join(map(str, container)) or "none")
    if isinstance(container, list):
        return f"the list has {len(container)} items"
    return f"it holds the value {container!r}, not a table or list"


def _parent(document: dict[str, Any], path: str) -> tuple[dict[str, Any] | list[Any], Step]:
    """The table or list holding the last step of ``path``, and that step; every step before
    it must exist."""
    steps = parse_path(path)
    node: Any = document
    walked = ""
    for step in steps[:-1]:
        if not _has(node, step):
            raise ConfigKeyError(
                f"{path}: {_join(walked, step)} does not exist in the config ({_describe(node)})"
            )
        node = node[step]
        walked = _join(walked, step)
    if not isinstance(node, dict | list):
        raise ConfigKeyError(f"{path}: {walked or 'the config'} is not a table or list")
    return node, steps[-1]


def _has(node: object, step: Step) -> bool:
    if isinstance(step, int):
        return isinstance(node, list) and 0 <= step < len(node)
    return isinstance(node, dict) and step in node


def _join(walked: str, step: Step) -> str:
    if isinstance(step, int):
        return f"{walked}[{step}]"
    return f"{walked}.{_key(step)}" if walked else _key(step)


# --- editing ----------------------------------------------------------------------------------


def read_config(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def write_config(path: Path, document: Mapping[str, Any]) -> Path:
    text = dumps(document)
    if tomllib.loads(text) != document:  # a guard on the writer below, not on the test
        raise AssertionError("the config writer lost information; fix tests/configs.py")
    path.write_text(text)
    return path


def edit_config(
    path: Path,
    changes: Mapping[str, Any] | None = None,
    *,
    add: Mapping[str, Any] | None = None,
    remove: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
) -> Path:
    """Edit the TOML file at ``path`` in place and return ``path``.

    In this order:

    - ``changes``: key path -> new value, for keys that exist (``ConfigKeyError`` otherwise);
    - ``add``: key path -> value, for keys that don't exist yet, in a table that does;
    - ``remove``: key paths that exist (a key, a whole table, or a list item);
    - ``rename``: key path -> new last key, in place (the table's key order is kept).
    """
    document = read_config(path)
    for key, value in (changes or {}).items():
        node, step = _parent(document, key)
        if not _has(node, step):
            raise ConfigKeyError(
                f"{key}: not in the config, so there is nothing to change ({_describe(node)}); "
                "to set a key the config does not have yet, pass it in add="
            )
        node[step] = value
    for key, value in (add or {}).items():
        node, step = _parent(document, key)
        if not isinstance(node, dict) or isinstance(step, int):
            raise ConfigKeyError(f"{key}: add= adds a key to a table, not an item to a list")
        if step in node:
            raise ConfigKeyError(
                f"{key}: already in the config (= {node[step]!r}); to change it, pass it in "
                "the changes, not in add="
            )
        node[step] = value
    for key in remove:
        node, step = _parent(document, key)
        if not _has(node, step):
            raise ConfigKeyError(
                f"{key}: not in the config, so there is nothing to remove ({_describe(node)})"
            )
        del node[step]
    for key, new_name in (rename or {}).items():
        node, step = _parent(document, key)
        if not isinstance(node, dict) or isinstance(step, int) or step not in node:
            raise ConfigKeyError(
                f"{key}: not in the config, so there is nothing to rename ({_describe(node)})"
            )
        if new_name in node:
            raise ConfigKeyError(f"{key}: can't rename it to {new_name!r}, which exists already")
        renamed = {(new_name if k == step else k): v for k, v in node.items()}
        node.clear()
        node.update(renamed)
    return write_config(path, document)


def replace_once(text: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` replaced by ``new``; ``old`` must be there."""
    assert old in text, f"{old!r} is not in the text, so replacing it would change nothing"
    return text.replace(old, new, 1)


# --- writing TOML -----------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"'}


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for ``document``: tables as ``[a.b]`` sections, lists of tables as
    ``[[a.b]]`` sections, tables inside those and inside lists inline."""
    lines: list[str] = []
    _table(document, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    table_lists = {k: v for k, v in table.items() if _is_table_list(v)}
    for key, value in table.items():
        if key not in subtables and key not in table_lists:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables.items():
        path = [*prefix, key]
        if not value or _has_plain_keys(value):  # else its subtables' headers imply it
            lines.extend(["", f"[{'.'.join(map(_key, path))}]"])
        _table(value, path, lines)
    for key, items in table_lists.items():
        header = ".".join(_key(k) for k in [*prefix, key])
        for item in items:
            lines.extend(["", f"[[{header}]]"])
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in item.items())


def _has_plain_keys(table: Mapping[str, Any]) -> bool:
    return any(not isinstance(v, Mapping) and not _is_table_list(v) for v in table.values())


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES or char == "\\":
            out.append(_ESCAPES.get(char, "\\\\"))
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _value(value: object) -> str:
    # bool before int: True is an int too; datetime before date: a datetime is a date too.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"can't write {value!r} ({type(value).__name__}) as TOML")
