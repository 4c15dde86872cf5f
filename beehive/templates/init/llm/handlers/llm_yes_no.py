"""Example handler: a language model answers a yes/no question about this node's documents.

The query is a yes/no question ("Does any record mention a penicillin allergy?").
The handler reads the answering node's own text documents, asks a chat model
the question about them, and answers 1 for "yes" and 0 for "no", so the total of
a round is the number of participants whose documents say yes, and nobody
learns which ones.

It speaks the OpenAI-compatible chat completions API (`POST
{OPENAI_BASE_URL}/chat/completions`), which ollama, vLLM and the llama.cpp server
all expose, with the standard library only: the handler needs no `requirements:`.

Settings (environment variables, e.g. a handler's `env:` / `env_file:` in hive.yaml):

- `OPENAI_BASE_URL` (required): the endpoint, up to and including `/v1`.
- `OPENAI_MODEL` (required): the model name the server knows.
- `OPENAI_API_KEY` (optional): sent as `Authorization: Bearer …`; put it in an
  `env_file:`, never inline in hive.yaml. Local servers usually need none.
- `OPENAI_TIMEOUT` (seconds, default 20): the HTTP call's bound. Keep it below
  the handler's `timeout:` in hive.yaml so a slow model gives this handler's
  clear error rather than the daemon's generic timeout.
- `DOCS_DIR`: this node's documents folder; when unset, `DOCS_ROOT/<alias>` of
  the node answering (`comp.node`). Every `*.txt` and `*.md` file in it,
  subfolders included, is read. A relative path is relative to the handler
  process's working directory.

Pointing it at a model on your own machine:

- ollama: `ollama serve`, `ollama pull llama3.2`, then
  `OPENAI_BASE_URL=http://127.0.0.1:11434/v1` and `OPENAI_MODEL=llama3.2`.
- vLLM: `vllm serve MODEL` (OpenAI server on port 8000):
  `OPENAI_BASE_URL=http://127.0.0.1:8000/v1`, `OPENAI_MODEL=MODEL`.
- llama.cpp: `llama-server -m model.gguf --port 8080`:
  `OPENAI_BASE_URL=http://127.0.0.1:8080/v1` (any `OPENAI_MODEL`).
- Try it without a network: `DOCS_DIR=examples/docs/charlie OPENAI_BASE_URL=…
  OPENAI_MODEL=… hive handler test handlers/llm_yes_no.py --query "Does any
  record mention a penicillin allergy?"`.

Where the data goes: the documents are read on the node's machine and sent to
the model endpoint the participant configured, and nowhere else. What leaves
toward the hive is only the 0/1 answer, as secret shares. So point
`OPENAI_BASE_URL` at a server you trust with the documents (on the same machine,
ideally). Error messages name the endpoint, the model and the HTTP status but
never contain the documents, nor the model's reply (which may quote them).
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from beehive import Computation, handler

DOCUMENT_SUFFIXES = (".txt", ".md")
# Small local models have a context of a few thousand tokens (ollama's default
# window is 2048-4096 tokens, about 4 characters each). A server that gets more
# drops the start of the prompt silently, instructions included, and the model
# then answers something else. Cutting the documents ourselves, at the end, keeps
# the instructions and the question in the window, predictably. Raise it for a
# model with a larger window; for large collections ask per document instead.
MAX_DOCUMENT_CHARS = 12_000
DEFAULT_TIMEOUT = 20.0

SYSTEM_PROMPT = (
    "You answer questions about the documents the user gives you, using only those "
    "documents. Answer with exactly one word: yes or no. No explanation."
)


def documents_folder(comp: Computation) -> Path:
    """The folder of the node answering: `DOCS_DIR`, else `DOCS_ROOT/<comp.node>`."""
    explicit = os.environ.get("DOCS_DIR", "").strip()
    if explicit:
        folder = Path(explicit).expanduser()
    else:
        root = os.environ.get("DOCS_ROOT", "").strip()
        if not root:
            raise ValueError("set DOCS_DIR (this node's documents) or DOCS_ROOT (one per node)")
        if comp.node is None:
            raise ValueError("DOCS_ROOT needs the answering node's alias; set DOCS_DIR instead")
        folder = Path(root).expanduser() / comp.node
    if not folder.is_dir():
        raise ValueError(f"documents folder {folder} does not exist")
    return folder


def read_documents(folder: Path, limit: int = MAX_DOCUMENT_CHARS) -> str:
    """The text files under `folder`, each under its name, at most `limit` characters."""
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
    )
    parts = [
        f"--- {p.relative_to(folder)} ---\n{p.read_text(encoding='utf-8', errors='replace')}"
        for p in files
    ]
    return "\n\n".join(parts)[:limit]


def user_prompt(documents: str, question: str) -> str:
    """Documents first, the question last (where small models weigh it most)."""
    return f"Documents:\n{documents or '(no documents)'}\n\nQuestion: {question}"


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ValueError(f"set {name} (see the top of handlers/llm_yes_no.py)")
    return value


def _timeout() -> float:
    raw = os.environ.get("OPENAI_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"OPENAI_TIMEOUT={raw!r}: a number of seconds") from None
    if not value > 0:
        raise ValueError(f"OPENAI_TIMEOUT={raw!r}: must be more than 0 seconds")
    return value


def ask_model(messages: list[dict[str, str]]) -> str:
    """POST the chat to the configured endpoint and return the reply's text."""
    base = _setting("OPENAI_BASE_URL").rstrip("/")
    model = _setting("OPENAI_MODEL")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"OPENAI_BASE_URL={base!r}: an http:// or https:// URL")
    url = f"{base}/chat/completions"
    body = {
        "model": model,
        "messages": messages,
        "temperature": 0,  # the same documents and question give the same answer
        "max_tokens": 16,  # one word expected; a bound on what a rambling model costs
        "stream": False,
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    timeout = _timeout()
    # The response body is never quoted in an error: a server may echo the prompt.
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload: Any = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = {
            401: "; check OPENAI_API_KEY",
            403: "; check OPENAI_API_KEY",
            404: f"; is model {model!r} served there (ollama: `ollama pull {model}`)?",
        }.get(exc.code, "")
        exc.close()
        raise RuntimeError(f"model endpoint {url} answered HTTP {exc.code}{hint}") from None
    except TimeoutError:
        raise TimeoutError(f"model endpoint {url} did not answer within {timeout:g}s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):  # timed out while connecting
            raise TimeoutError(f"model endpoint {url} did not answer within {timeout:g}s") from None
        raise ConnectionError(f"cannot reach model endpoint {url}: {exc.reason}") from None
    except (http.client.HTTPException, ConnectionError) as exc:  # dropped mid-answer
        raise ConnectionError(f"model endpoint {url} broke off: {type(exc).__name__}") from None
    except ValueError:
        raise ValueError(f"model endpoint {url} did not answer with JSON") from None
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(
            f"model endpoint {url} answered without choices[0].message.content"
        ) from None
    if not isinstance(content, str):
        raise ValueError(f"model {model!r} answered a non-text message content")
    return content


def yes_or_no(reply: str) -> int:
    """1 for a reply whose first word is yes, 0 for no; anything else is an error.

    The reply itself is left out of the message: a model that ignores the
    instructions may be quoting the documents.
    """
    words = reply.split()
    first = words[0].strip(".,;:!?\"'`*()[]").casefold() if words else ""
    if first == "yes":
        return 1
    if first == "no":
        return 0
    raise ValueError(
        f"the model answered neither yes nor no ({len(reply)} characters, reply not shown "
        f"because it may quote the documents)"
    )


@handler
def llm_yes_no(comp: Computation) -> int:
    question = comp.query.strip()
    if not question:
        raise ValueError("empty question: the query is the yes/no question to ask")
    documents = read_documents(documents_folder(comp))
    reply = ask_model(
        [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(documents, question)},
        ]
    )
    return yes_or_no(reply)
