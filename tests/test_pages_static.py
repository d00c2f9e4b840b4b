"""The run command's static files: after collectstatic, daphne (through WhiteNoise) serves the
admin's CSS and the pages' scripts, which daphne alone would not."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from tests.stack import Stack


def test_daphne_serves_the_collected_static_files(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")
    try:
        stack.migrate()
        stack.manage("collectstatic", "--no-input", "-v0")
        assert (tmp_path / "stack" / "static" / "admin" / "css" / "base.css").is_file()
        stack.start_web()
        login = urllib.request.urlopen(stack.url + "/admin/login/", timeout=30).read().decode()
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', login)
        assert "/static/admin/css/base.css" in stylesheets
        for path, kind in [
            *((s, "text/css") for s in stylesheets),
            ("/static/clawsite/live.js", "text/javascript"),
            ("/static/clawsite/dashboard.js", "text/javascript"),
        ]:
            with urllib.request.urlopen(stack.url + path, timeout=30) as response:
                assert response.status == 200 and response.headers["Content-Type"].startswith(
                    kind
                ), path
                assert len(response.read()) > 100
    finally:
        stack.stop()
