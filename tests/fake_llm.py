"""A local OpenAI-compatible chat server for tests: streams an answer slowly, or answers 429
with Retry-After, or 503, as told; counts the requests it holds at once (the evidence that a
concurrency limit held) and when each arrived."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLlm:
    def __init__(self, name: str = "fake", delay: float = 0.2) -> None:
        self.name = name
        self.delay = delay
        self.lock = threading.Lock()
        self.holding = 0
        self.max_holding = 0
        self.arrivals: list[float] = []
        self.prompts: list[str] = []
        # prompt -> how to answer it: ("slow", seconds) | ("status", code, retry_after | None)
        self.script: Callable[[str, int], tuple[Any, ...]] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                prompt = body["messages"][-1]["content"]
                with server.lock:
                    server.holding += 1
                    server.max_holding = max(server.max_holding, server.holding)
                    server.arrivals.append(time.time())
                    server.prompts.append(prompt)
                    count = len(server.prompts)
                try:
                    answer = server.script(prompt, count) if server.script else ("slow", None)
                    if answer[0] == "status":
                        self._status(answer[1], answer[2])
                    else:
                        self._stream(prompt, server.delay if answer[1] is None else answer[1])
                finally:
                    with server.lock:
                        server.holding -= 1

            def _status(self, code: int, retry_after: int | None) -> None:
                payload = json.dumps({"error": {"message": f"status {code}"}}).encode()
                self.send_response(code)
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, prompt: str, delay: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for part in (f"{server.name}:", prompt):
                    time.sleep(delay / 2)
                    chunk = {"model": "fake", "choices": [{"delta": {"content": part}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reset_counts(self) -> None:
        with self.lock:
            self.max_holding = self.holding
            self.arrivals.clear()
            self.prompts.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
