from __future__ import annotations

import json
from typing import Any

from django import forms

from tools_app.registry import all_tools


class TaskSubmitForm(forms.Form):
    tool = forms.ChoiceField()
    args = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        initial="{}",
        help_text='The tool\'s arguments as a JSON object, e.g. {"path": "notes.txt"}.',
    )
    priority = forms.IntegerField(min_value=-100, max_value=100, initial=0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tool"].choices = [(tool.name, tool.name) for tool in all_tools()]

    def clean_args(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["args"] or "{}")
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The arguments must be a JSON object.")
        return value
