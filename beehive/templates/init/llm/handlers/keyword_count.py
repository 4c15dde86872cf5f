"""Example handler: how often a keyword occurs in this node's own documents.

No model and no network: the answer is a plain count, so it is the first handler
to try on real data, and the one whose total a test can check exactly.

The keyword is `comp.metadata["keyword"]` when the proposer sends one
(`hive submit "How often is penicillin mentioned?" --metadata keyword=penicillin`),
else the whole query text. Matching is a case-insensitive substring count over
every `*.txt` and `*.md` file of the documents folder, subfolders included
("penicillin" also counts inside "Penicillin-class"): simple enough that every
participant can predict what their node will answer.

Settings (environment variables, e.g. a handler's `env:` in hive.yaml):

- `DOCS_DIR`: this node's documents folder. When unset:
- `DOCS_ROOT`: a folder with one subfolder per node alias; the node answering
  reads `DOCS_ROOT/<alias>` (`comp.node`), so one handler process can serve
  several nodes without one node reading another's documents.

A relative path is relative to the handler process's working directory. A
missing folder is an error, not 0: a node that silently answered 0 would skew
the total without anyone noticing.

The answer is capped at `MAX_COUNT` so that a large network's sum stays far
below 2^32 (answers are summed as shares mod 2^32), and so that one node's
answer cannot dominate a total by sheer volume of text.
"""

from __future__ import annotations

import os
from pathlib import Path

from beehive import Computation, handler

MAX_COUNT = 1000
DOCUMENT_SUFFIXES = (".txt", ".md")


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


def document_files(folder: Path) -> list[Path]:
    """The text files under `folder`, in a stable order (sorted paths)."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
    )


@handler
def keyword_count(comp: Computation) -> int:
    keyword = str(comp.metadata.get("keyword") or comp.query).strip().casefold()
    if not keyword:
        raise ValueError("empty keyword: send a query or --metadata keyword=WORD")
    total = 0
    for path in document_files(documents_folder(comp)):
        # errors="replace": one badly encoded file should not fail the whole answer.
        text = path.read_text(encoding="utf-8", errors="replace").casefold()
        total += text.count(keyword)
        if total >= MAX_COUNT:
            return MAX_COUNT
    return total
