"""Telling configuration problems: one line per problem, each starting with its key path."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


KEYED = "keyed_problems"


def keyed_problems(lines: list[str]) -> PydanticCustomError:
    """An error from a table-level check whose lines each start with a key below that table."""
    return PydanticCustomError(KEYED, "{text}", {"lines": lines, "text": "; ".join(lines)})


def describe_validation_errors(exc: ValidationError) -> list[str]:
    """One line per problem, each starting with its key path, in words a therapist can act on."""
    lines = []
    for error in exc.errors(include_url=False):
        path = _key_path(error["loc"])
        if error["type"] == KEYED:
            # A table-level check names the keys below ``path`` itself.
            lines += [f"{path}.{line}" if path else line for line in error["ctx"]["lines"]]
        else:
            lines.append(f"{path}: {_describe(error)}" if path else _describe(error))
    return lines


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {op} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {error['input']!r})"
    if kind == "string_pattern_mismatch":
        if error["loc"][-1] == "message_id_domain":
            return f"{error['input']!r} is not a domain name"
        if error["loc"][-1] == "unsubscribe_url":
            return f"{error['input']!r} must be an https:// URL"
        return (
            f"{error['input']!r} must start with a lower-case letter, then letters, digits, - or _"
        )
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else error["msg"]
    if kind == "too_short":
        return "must have at least one entry"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])
