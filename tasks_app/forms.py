"""Forms for people: a tool's arguments as fields built from its JSON Schema, the task options,
and the batch upload. The tool's pydantic model stays the one validator: the form only turns
fields into an ``args`` dict, and pydantic's errors are put back beside the fields they name."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings

from tools_app.registry import Tool

from . import safejson
from .schemas import MAX_BATCH

ARGS_JSON = "args_json"
# Free text that is usually long gets a text area rather than a one-line input.
LONG_TEXT_FIELDS = {"content", "code", "prompt", "body"}


def _nullable(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``anyOf: [X, null]`` (pydantic's ``X | None``) as (X, True); anything else as is."""
    options = schema.get("anyOf")
    if options and len(options) == 2 and {"type": "null"} in options:
        inner = next(option for option in options if option != {"type": "null"})
        return {**schema, **inner, "anyOf": None}, True
    return schema, False


def _string_list(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" and schema.get("items", {}).get("type") == "string"


class LinesField(forms.CharField):
    """A list of strings, one per line (``argv``, for instance)."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def to_python(self, value: Any) -> list[str] | None:  # type: ignore[override]
        text = super().to_python(value)
        return [line for line in text.splitlines() if line.strip()] if text else None


class JSONValueField(forms.CharField):
    """Any JSON value (objects, lists of objects): the schema is too rich for plain fields."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return None
        try:
            return safejson.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None


def field_for(name: str, schema: dict[str, Any], required: bool) -> forms.Field:
    """One form field for one property of a tool's argument schema."""
    schema, nullable = _nullable(schema)
    label = schema.get("title") or name
    options: dict[str, Any] = {
        "label": label,
        "required": required and not nullable,
        "help_text": schema.get("description", ""),
    }
    default = schema.get("default")
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        values = schema.get("enum") or [schema["const"]]
        choices = [(value, value) for value in values]
        return forms.TypedChoiceField(
            choices=choices if options["required"] else [("", "(default)"), *choices],
            initial=default,
            coerce=type(values[0]),  # type: ignore[arg-type]  # str, int or float: callable on a str
            empty_value=None,
            **options,
        )
    if kind == "boolean":
        # Always sent (checked or not), so an unticked box means false, not "the default".
        return forms.BooleanField(initial=bool(default), **{**options, "required": False})
    if kind == "integer":
        return forms.IntegerField(
            initial=default,
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            **options,
        )
    if kind == "number":
        return forms.FloatField(
            initial=default,
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            **options,
        )
    if kind == "string":
        widget = (
            forms.Textarea(attrs={"rows": 6, "spellcheck": "false"})
            if name in LONG_TEXT_FIELDS
            else None
        )
        return forms.CharField(
            initial=default, strip=False, widget=widget, empty_value=None, **options
        )
    if _string_list(schema):
        options["help_text"] = options["help_text"] or "One item per line."
        return LinesField(initial="\n".join(default or []), **options)
    options["help_text"] = options["help_text"] or "A JSON value."
    return JSONValueField(initial=None if default is None else json.dumps(default), **options)


class TaskSubmitForm(forms.Form):
    """The task options, the selected tool's argument fields, and a JSON fallback for ``args``."""

    priority = forms.IntegerField(min_value=-100, max_value=100, initial=0)
    timeout = forms.FloatField(
        required=False,
        min_value=0.001,
        max_value=86400,
        help_text="Seconds per attempt (default: the tool's).",
    )
    max_attempts = forms.IntegerField(min_value=1, max_value=100, initial=3)
    run_after = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
        input_formats=[
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ],
        help_text="Earliest start, in UTC (empty: now).",
    )
    args_json = forms.CharField(
        label="Arguments as JSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text='Optional: a JSON object that replaces the fields above, e.g. {"path": "notes.txt"}.',
    )

    def __init__(self, tool: Tool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tool = tool
        schema = tool.Args.model_json_schema()
        required = set(schema.get("required", []))
        self.arg_names = list(schema.get("properties", {}))
        for name, prop in schema.get("properties", {}).items():
            self.fields[f"arg_{name}"] = field_for(name, prop, name in required)
        # The argument fields first, then the options.
        self.order_fields([f"arg_{name}" for name in self.arg_names])

    def arg_fields(self) -> list[forms.BoundField]:
        return [self[f"arg_{name}"] for name in self.arg_names]

    def option_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("priority", "timeout", "max_attempts", "run_after")]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        raw = (cleaned.get(ARGS_JSON) or "").strip()
        if raw:
            # The JSON fallback replaces the fields: their "required" errors no longer apply.
            for name in self.arg_names:
                self.errors.pop(f"arg_{name}", None)
            try:
                args = safejson.loads(raw)
            except ValueError as exc:
                self.add_error(ARGS_JSON, f"Not valid JSON: {exc}")
                return cleaned
            if not isinstance(args, dict):
                self.add_error(ARGS_JSON, "The arguments must be a JSON object.")
                return cleaned
        else:
            # Unset optional fields are left out, so the tool's own defaults apply.
            args = {
                name: cleaned[f"arg_{name}"]
                for name in self.arg_names
                if cleaned.get(f"arg_{name}") is not None
            }
        cleaned["args"] = args
        return cleaned

    def submission(self) -> dict[str, Any]:
        """The API's submission object for ``services.validate_submission``."""
        data = self.cleaned_data
        submission: dict[str, Any] = {
            "tool": self.tool.name,
            "args": data["args"],
            "priority": data["priority"],
            "max_attempts": data["max_attempts"],
        }
        if data.get("timeout"):
            submission["timeout"] = data["timeout"]
        if data.get("run_after"):
            submission["run_after"] = data["run_after"]
        return submission

    def add_submission_errors(self, details: Any, message: str) -> None:
        """Put the tool validator's errors (``{"loc", "message"}``) beside the argument fields
        they name (or the JSON box, when used). The options were checked by this form with the
        API's own bounds, so what comes back is about the arguments (an argument may be named
        like an option, ``timeout`` for instance: it still goes beside the argument)."""
        self.add_error(None, message)
        from_json = bool(self.cleaned_data.get(ARGS_JSON))
        for detail in details if isinstance(details, list) else []:
            loc = str(detail.get("loc", ""))
            text = detail.get("message", "Invalid value.")
            name = loc.split(".")[0]
            if from_json:
                self.add_error(ARGS_JSON, f"{loc}: {text}" if loc else text)
            elif name in self.arg_names:
                self.add_error(f"arg_{name}", text)
            else:
                self.add_error(None, f"{loc}: {text}" if loc else text)


class BatchSubmitForm(forms.Form):
    """JSON lines (one submission object per line), pasted or uploaded."""

    lines = forms.CharField(
        label="Tasks, one JSON object per line",
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        help_text='Each line like {"tool": "read_file", "args": {"path": "notes.txt"}}.',
    )
    file = forms.FileField(label="Or upload a .jsonl file", required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("file")
        text = cleaned.get("lines") or ""
        if upload is not None:
            if upload.size > settings.CLAWSITE_MAX_BODY_BYTES:
                raise forms.ValidationError(
                    f"The file is larger than {settings.CLAWSITE_MAX_BODY_BYTES} bytes."
                )
            try:
                text = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if not numbered:
            raise forms.ValidationError("Paste at least one line, or upload a file.")
        if len(numbered) > MAX_BATCH:
            raise forms.ValidationError(
                f"At most {MAX_BATCH} tasks per batch, not {len(numbered)}."
            )
        cleaned["numbered_lines"] = numbered
        return cleaned
