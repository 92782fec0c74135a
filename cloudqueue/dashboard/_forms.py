"""An enqueue form generated from a job's payload schema, and reading it back.

Scalars get their own input (text, number, checkbox, a select for enums and literals);
anything richer (nested models, lists, dicts, unions) gets a JSON textarea. A blank
input means "not given", so the model's default applies, or pydantic says the field is
required. The job's own model validates what comes back; each of its errors is shown on
the field it names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from ..job import Job

#: the one field of a form whose payload is not an object (e.g. ``list[int]``)
WHOLE = "__payload__"


@dataclass
class Field:
    """One input of the form."""

    name: str
    label: str
    kind: str  # text | integer | number | checkbox | select | json
    required: bool
    value: str = ""
    help: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)  # (JSON value, label)
    nullable: bool = False
    constraints: str = ""
    checked: bool = False

    @property
    def input_id(self) -> str:
        return f"field-{self.name}"


def job_schema(job: Job[Any, Any]) -> dict[str, Any]:
    """The JSON schema of the job's payload type."""
    payload_type = job.payload_type
    if isinstance(payload_type, type) and issubclass(payload_type, BaseModel):
        return payload_type.model_json_schema()
    from pydantic import TypeAdapter

    return TypeAdapter(payload_type).json_schema()


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if isinstance(target, Mapping):
            merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            return merged
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        inner = _resolve(all_of[0], root)
        return {**inner, **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _constraints(schema: Mapping[str, Any]) -> str:
    words = {"minimum": ">= {}", "exclusiveMinimum": "> {}", "maximum": "<= {}", "exclusiveMaximum": "< {}",
             "minLength": "at least {} characters", "maxLength": "at most {} characters",
             "pattern": "matches {}", "format": "format {}"}
    return ", ".join(text.format(schema[key]) for key, text in words.items() if key in schema)


def _field(name: str, schema: Mapping[str, Any], root: Mapping[str, Any], required: bool) -> Field:
    schema = _resolve(schema, root)
    nullable = False
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        others = [s for s in any_of if not (isinstance(s, Mapping) and s.get("type") == "null")]
        nullable = len(others) < len(any_of)
        if len(others) == 1 and isinstance(others[0], Mapping):
            schema = {**_resolve(others[0], root),
                      **{k: v for k, v in schema.items() if k not in ("anyOf",)}}
    label = str(schema.get("title") or name)
    help_text = str(schema.get("description") or "")
    default = schema.get("default")
    made = Field(name=name, label=label, kind="json", required=required, help=help_text, nullable=nullable,
                 constraints=_constraints(schema))
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        values = schema.get("enum") or [schema.get("const")]
        made.kind = "select"
        made.options = [(json.dumps(v), str(v)) for v in values]
        made.value = json.dumps(default) if "default" in schema else ""
    elif kind == "boolean":
        made.kind = "checkbox"
        made.checked = bool(default)
    elif kind in ("string", "integer", "number"):
        made.kind = "text" if kind == "string" else kind
        made.value = "" if default is None else str(default)
    else:
        made.value = "" if "default" not in schema else json.dumps(default, indent=2)
        if not made.help:
            made.help = "JSON"
    return made


def form_fields(job: Job[Any, Any]) -> list[Field]:
    """The inputs of the job's enqueue form."""
    root = job_schema(job)
    schema = _resolve(root, root)
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, Mapping):
        return [Field(name=WHOLE, label="payload", kind="json", required=True, help="the whole payload, as JSON")]
    required = set(schema.get("required") or ())
    return [_field(str(name), prop, root, name in required) for name, prop in properties.items()]


def read_form(fields: list[Field], form: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """The payload the form describes, and the fields that could not be read (name -> why).

    The submitted text is kept on each field so the form shows it again.
    """
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in fields:
        raw = form.get(item.name)
        if item.kind == "checkbox":
            item.checked = raw is not None
            data[item.name] = item.checked
            continue
        text = (raw or "").strip() if item.kind != "json" else (raw or "")
        item.value = text
        if not text.strip():
            continue  # not given: the model's default applies, or it says the field is required
        if item.kind in ("json", "select"):
            try:
                data[item.name] = json.loads(text)
            except ValueError as exc:
                errors[item.name] = f"not valid JSON: {exc}"
        else:
            data[item.name] = text
    if len(fields) == 1 and fields[0].name == WHOLE:
        return data.get(WHOLE), errors
    return data, errors


def field_errors(fields: list[Field], errors: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """Pydantic's errors placed on the fields they name; the rest for the top of the form."""
    names = {f.name for f in fields}
    placed: dict[str, list[str]] = {}
    loose: list[str] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "invalid"))
        if len(names) == 1 and WHOLE in names:
            placed.setdefault(WHOLE, []).append(f"{'.'.join(loc)}: {message}" if loc else message)
        elif loc and loc[0] in names:
            inner = ".".join(loc[1:])
            placed.setdefault(loc[0], []).append(f"{inner}: {message}" if inner else message)
        else:
            loose.append(f"{'.'.join(loc) or 'payload'}: {message}")
    return {name: "; ".join(messages) for name, messages in placed.items()}, loose
