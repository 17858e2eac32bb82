"""Message templates: Jinja2, sandboxed and strict, read like an email (headers, blank line, body).

Lookup: ``<dir>/<segment>/<name>.txt.j2``, else ``<dir>/_default/<name>.txt.j2``; shared pieces
in ``<dir>/_partials/``. Every message must include the footer partial
(``_partials/footer.txt.j2``: practice, postal address, opt-out); a template without it fails.

Context: ``greeting`` (the opening line, "Dear Rabbi Feldman,": ``mail/compose.py``),
``contact`` (only its non-empty fields, custom fields included, so a blank first name is an
error rather than "Hi ,"), ``segment`` (name, label, profile fields), ``practice``,
``sender``, ``step`` (number, template, total).

A contact field missing for one contact (``contact.first_name``, ``contact.custom.years``)
raises ``MissingContactField``: that contact lacks data, the template is fine, and only that
contact waits. ``{% if contact.organization %}`` is false for a missing field instead.
Anything else undefined (``practice.nme``, ``segment.neds``) is the template's problem.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from outreach.domain.fields import has_control_characters
from outreach.errors import TemplateProblem

FOOTER = "_partials/footer.txt.j2"
DEFAULT = "_default"
SUFFIX = ".txt.j2"
HEADERS = {"subject": "Subject"}
MAX_REPEAT = 100_000  # the longest string or list ``*`` may build (Jinja caps range() alike)
MAX_EXPONENT = 1_000


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, which already caps ``range()``, plus caps on ``*`` and ``**``: a typo
    such as ``{{ "-" * 10**9 }}`` must fail as a template problem, not eat the machine."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                repeats = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if repeats and len(seq) * count > MAX_REPEAT:
                    raise SecurityError(
                        f"repeating makes {len(seq) * count:,} items (at most {MAX_REPEAT:,})"
                    )
        return super().call_binop(context, operator, left, right)


class ContactFields(dict[str, Any]):
    """A contact's fields as a template sees them: a missing one is the contact's lack
    (``MissingContactField``), not the template's error."""


class MissingContactField(TemplateProblem):
    """A template uses a contact field this contact doesn't have (``field``): the contact
    needs data; the template is fine for the contacts that have it."""

    def __init__(self, template: str, field: str, *, line: int | None = None) -> None:
        self.field = field
        super().__init__(template, f"undefined variable {field!r}", line=line)


class _MissingField(UndefinedError):
    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"undefined variable {field!r}")


class _Undefined(StrictUndefined):
    """Strict, except that a missing contact field is told apart (and is false in an ``if``)."""

    __slots__ = ()

    def _missing_field(self) -> str | None:
        name = self._undefined_name
        if isinstance(self._undefined_obj, ContactFields) and isinstance(name, str):
            return name
        return None

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        field = self._missing_field()
        if field is not None:
            raise _MissingField(field)
        return super()._fail_with_undefined_error(*args, **kwargs)

    # StrictUndefined types __bool__ as always failing (Never); this one may answer False.
    def __bool__(self) -> bool:  # type: ignore[override]
        if self._missing_field() is not None:
            return False
        return bool(super().__bool__())


# Jinja binds its undefined's dunders (``__str__``, ``__iter__``, ``__add__``...) to the failing
# function when its classes are created; route them through ours, so a missing contact field is
# told apart however a template uses it.
for _name, _value in {**vars(Undefined), **vars(StrictUndefined)}.items():
    if _value is Undefined._fail_with_undefined_error and _name not in vars(_Undefined):
        setattr(_Undefined, _name, _Undefined._fail_with_undefined_error)


@dataclass(frozen=True)
class RenderedMessage:
    """A rendered template: its headers and plain-text body."""

    template: str
    subject: str | None
    body: str


class TemplateSet:
    """The templates in one folder, rendered in a sandbox with strict undefined variables."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env = _Sandbox(
            loader=FileSystemLoader(str(directory)),
            undefined=_Undefined,
            autoescape=False,  # plain text; an HTML part would get its own escaping env
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def path_for(self, segment: str, name: str) -> str:
        """The template a segment uses for ``name`` (its own, else the default one)."""
        own = f"{segment}/{name}{SUFFIX}"
        if (self.directory / own).is_file():
            return own
        fallback = f"{DEFAULT}/{name}{SUFFIX}"
        if (self.directory / fallback).is_file():
            return fallback
        raise TemplateProblem(
            own,
            f"no template {name!r} for segment {segment!r}: create {self.directory / own} "
            f"or {self.directory / fallback}",
        )

    def render(
        self, segment: str, name: str, context: Mapping[str, Any], *, needs_subject: bool
    ) -> RenderedMessage:
        """Render a template, or raise TemplateProblem naming its file, line and variable."""
        path = self.path_for(segment, name)
        text = self._render(path, context)
        footer = self._render(FOOTER, context).strip()
        if text.startswith("\n"):
            header_block, body = "", text  # no header lines: a follow-up in its thread
        else:
            header_block, blank, body = text.partition("\n\n")
            if not blank:
                raise TemplateProblem(path, "needs header lines, a blank line, then the body")
        headers = self._headers(path, header_block)
        subject = headers.get("subject")
        if needs_subject and not subject:
            raise TemplateProblem(path, "needs a 'Subject:' line: this step starts a thread")
        if footer not in body:
            raise TemplateProblem(
                path, f"leaves out the footer; add {{% include '{FOOTER}' %}} at the end"
            )
        return RenderedMessage(template=path, subject=subject, body=body.strip("\n") + "\n")

    def _render(self, path: str, context: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(path).render(context)
        except TemplateSyntaxError as exc:
            where = exc.filename or path
            raise TemplateProblem(
                _relative(where, self.directory), exc.message or "syntax error", line=exc.lineno
            ) from None
        except TemplateNotFound as exc:
            raise TemplateProblem(path, f"includes {exc.name!r}, which does not exist") from None
        except _MissingField as exc:
            file, line = _template_frame(exc, self.directory) or (path, None)
            raise MissingContactField(file, exc.field, line=line) from None
        except UndefinedError as exc:
            file, line = _template_frame(exc, self.directory) or (path, None)
            raise TemplateProblem(file, _undefined_message(exc), line=line) from None
        except TemplateError as exc:
            file, line = _template_frame(exc, self.directory) or (path, None)
            raise TemplateProblem(file, str(exc), line=line) from None
        except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
            # An expression that fails (the sandbox's range cap, 1/0, "a" + 1): a problem
            # of the template, named with its line, not a traceback.
            file, line = _template_frame(exc, self.directory) or (path, None)
            raise TemplateProblem(file, f"{type(exc).__name__}: {exc}", line=line) from None

    @staticmethod
    def _headers(path: str, block: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        for number, line in enumerate(block.splitlines(), start=1):
            name, colon, value = line.partition(":")
            key = name.strip().lower()
            if not colon or key not in HEADERS:
                raise TemplateProblem(
                    path,
                    f"header line {line!r} is not one of: {', '.join(HEADERS.values())}",
                    line=number,
                )
            if has_control_characters(value):
                raise TemplateProblem(
                    path, f"{HEADERS[key]} contains a control character", line=number
                )
            headers[key] = value.strip()
        return headers


def _relative(filename: str, directory: Path) -> str:
    try:
        return str(Path(filename).relative_to(directory))
    except ValueError:
        return filename


def _template_frame(exc: BaseException, directory: Path) -> tuple[str, int] | None:
    """The innermost template file and line in the traceback (Jinja maps frames to them)."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(SUFFIX) and frame.lineno is not None:
            found = (_relative(frame.filename, directory), frame.lineno)
    return found


def _undefined_message(exc: UndefinedError) -> str:
    # Jinja says "'dict object' has no attribute 'first_name'"; name the variable instead.
    message = exc.message or "undefined variable"
    if "has no attribute" in message:
        attribute = message.rsplit("has no attribute", 1)[1].strip().strip("'")
        return f"undefined variable {attribute!r}"
    return message
