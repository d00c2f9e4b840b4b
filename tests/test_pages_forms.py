"""Form fields built from a tool's JSON Schema: each kind of argument, cleaned to what the tool's
pydantic model accepts."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from django import forms
from pydantic import BaseModel, Field

from tasks_app.forms import JSONValueField, LinesField, TaskSubmitForm, field_for


class RichArgs(BaseModel):
    url: str
    method: Literal["GET", "POST"] = "GET"
    argv: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(None, ge=1, le=10)
    ratio: float = 0.5
    follow: bool = True
    messages: list[dict[str, Any]] | None = None


class RichTool:
    name = "rich"
    description = "A tool with every kind of argument."
    Args: ClassVar[type[BaseModel]] = RichArgs


def fields() -> dict[str, forms.Field]:
    schema = RichArgs.model_json_schema()
    required = set(schema["required"])
    return {
        name: field_for(name, prop, name in required) for name, prop in schema["properties"].items()
    }


def test_each_schema_kind_gets_its_field() -> None:
    built = fields()
    assert isinstance(built["url"], forms.CharField) and built["url"].required
    assert isinstance(built["method"], forms.TypedChoiceField) and not built["method"].required
    assert isinstance(built["argv"], LinesField)
    assert isinstance(built["headers"], JSONValueField) and isinstance(
        built["messages"], JSONValueField
    )
    assert (
        isinstance(built["limit"], forms.IntegerField)
        and built["limit"].max_value == 10
        and not built["limit"].required
    )
    assert isinstance(built["ratio"], forms.FloatField) and isinstance(
        built["follow"], forms.BooleanField
    )


def test_a_filled_form_cleans_to_valid_args() -> None:
    data = {
        "arg_url": "https://example.org/",
        "arg_method": "POST",
        "arg_argv": "ls\n-la\n",
        "arg_headers": '{"X-A": "1"}',
        "arg_limit": "",
        "arg_ratio": "0.25",
        "priority": "0",
        "max_attempts": "3",
    }
    form = TaskSubmitForm(RichTool(), data)  # type: ignore[arg-type]
    assert form.is_valid(), form.errors
    args = form.cleaned_data["args"]
    # The unticked box is false; the empty optional number is left to the tool's default.
    assert args == {
        "url": "https://example.org/",
        "method": "POST",
        "argv": ["ls", "-la"],
        "headers": {"X-A": "1"},
        "ratio": 0.25,
        "follow": False,
    }
    assert RichArgs.model_validate(args).limit is None


def test_bad_values_are_field_errors() -> None:
    form = TaskSubmitForm(
        RichTool(),  # type: ignore[arg-type]  # a tool of the test's own
        {
            "arg_url": "x",
            "arg_headers": "{oops",
            "arg_limit": "99",
            "priority": "0",
            "max_attempts": "3",
        },
    )  # type: ignore[arg-type]
    assert not form.is_valid()
    assert (
        "arg_headers" in form.errors and "arg_limit" in form.errors and "arg_url" not in form.errors
    )


def test_an_argument_named_like_an_option_gets_its_own_error() -> None:
    class TimedArgs(BaseModel):
        timeout: float = Field(10, gt=0, le=60)

    class TimedTool:
        name = "timed"
        description = ""
        Args: ClassVar[type[BaseModel]] = TimedArgs

    form = TaskSubmitForm(
        TimedTool(),  # type: ignore[arg-type]
        {"arg_timeout": "5", "timeout": "2", "priority": "0", "max_attempts": "3"},
    )  # type: ignore[arg-type]
    assert form.is_valid(), form.errors
    assert form.cleaned_data["args"] == {"timeout": 5.0} and form.submission()["timeout"] == 2.0
    form.add_submission_errors(
        [{"loc": "timeout", "message": "too long"}], "Invalid arguments for timed."
    )
    assert form.errors["arg_timeout"] == ["too long"] and "timeout" not in form.errors
