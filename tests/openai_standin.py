"""A stand-in for a model server: an OpenAI-compatible chat completions endpoint.

Declared as such: no real model can run in CI here (no GPU, no weights, no
network), so the tests of handlers/llm_yes_no.py talk to this instead. It speaks
the same wire format as ollama, vLLM and the llama.cpp server (`POST
/v1/chat/completions`, the standard response JSON), so the handler's HTTP, JSON
and authentication code runs for real; only the "model" is a rule.

The rule is deterministic: the reply is "yes" when `yes_if` (a substring,
case-insensitive) appears in the documents part of the last user message (what
comes before its last "Question:", so a question naming the marker does not
count), else "no". `reply=` forces one reply instead (to test a model that
ignores its instructions).

    with OpenAIStandIn(yes_if="penicillin", api_key="sk-test") as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        ...
        assert server.requests[0].model == "llama3.2"

Every request is recorded (`requests`: model, Authorization header, messages),
also those refused with 401 when `api_key` is set and not sent as a Bearer token.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["OpenAIStandIn", "RecordedRequest"]

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class RecordedRequest:
    """What one POST to the chat endpoint carried."""

    model: str | None
    authorization: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


class OpenAIStandIn:
    """A chat completions server on 127.0.0.1, in a thread; a context manager."""

    def __init__(
        self, yes_if: str = "", *, api_key: str | None = None, reply: str | None = None
    ) -> None:
        self.yes_if = yes_if.casefold()
        self.api_key = api_key
        self.reply = reply
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> OpenAIStandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        # A short poll interval: stop() (shutdown) waits for the loop to notice.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="openai-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OpenAIStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1, what OPENAI_BASE_URL is set to."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- the "model" ------------------------------------------------------------------

    def answer(self, messages: list[dict[str, Any]]) -> str:
        """The rule: "yes" if the marker is in the documents of the last user message."""
        if self.reply is not None:
            return self.reply
        users = [m for m in messages if m.get("role") == "user"]
        content = str(users[-1].get("content", "")) if users else ""
        documents = content.rsplit("Question:", 1)[0]
        return "yes" if self.yes_if and self.yes_if in documents.casefold() else "no"

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def models(self) -> list[str | None]:
        """The model of every request so far, in arrival order."""
        with self._lock:
            return [r.model for r in self.requests]


def _handler_class(standin: OpenAIStandIn) -> type[BaseHTTPRequestHandler]:
    class ChatHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            if self.path.rstrip("/") != CHAT_PATH:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            model = body.get("model")
            messages = body.get("messages") or []
            authorization = self.headers.get("Authorization")
            if standin.api_key is not None and authorization != f"Bearer {standin.api_key}":
                standin.record(RecordedRequest(model, authorization, messages, 401))
                self._send(401, {"error": {"message": "invalid API key", "code": 401}})
                return
            standin.record(RecordedRequest(model, authorization, messages))
            content = standin.answer(messages)
            self._send(200, _completion(model, content))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows the assertions, not an access log."""

    return ChatHandler


def _completion(model: str | None, content: str) -> dict[str, Any]:
    """The standard chat completion response, as the real servers send it."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
    }
