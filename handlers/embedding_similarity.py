"""Example handler: how many of this node's documents are about the query's topic.

A model that runs here, on the CPU, in this process: WordLlama (`pip install
wordllama`), token embeddings taken from large language models and trained for
text similarity (256 dimensions). Its weights (16 MB) and its tokenizer (2 MB)
ship inside the package, so there is no model server to run, no GPU, no torch,
and nothing is downloaded when it runs. The handler embeds the topic and each text document
of the node (the mean of its tokens' vectors), and answers the number of
documents whose cosine similarity to the topic reaches `SIMILARITY_THRESHOLD`.
So the total of a round is how many documents, across the participants, are
about the topic, and nobody learns whose.

The topic is `comp.metadata["topic"]` when the proposer sends one (`hive submit
"How many notes are about beekeeping?" --metadata topic="honey bees and
beekeeping"`), else the whole query text. A short topic scores more sharply
than a question: the question's own words ("how many notes are about") count
too. Documents are every `*.txt` and `*.md` file of the documents folder,
subfolders included; an empty one is about nothing (never counted).

Settings (environment variables, e.g. a handler's `env:` in hive.yaml):

- `SIMILARITY_THRESHOLD` (default 0.5): the cosine similarity (-1 to 1) from
  which a document counts. With this model, text on another subject scores
  about 0 to 0.2, text on the same subject 0.5 to 0.8 (the
  tests/test_embedding_example.py documents: 0.56 to 0.73 against at most
  0.13), and text of the same field that is not about the topic in between (a
  clinic note saying "no known drug allergies" scores 0.43 against "penicillin
  allergy", one confirming a penicillin allergy 0.75): lower the threshold to
  count a whole field, raise it to count only close matches.
- `DOCS_DIR`: this node's documents folder. When unset:
- `DOCS_ROOT`: a folder with one subfolder per node alias; the node answering
  reads `DOCS_ROOT/<alias>` (`comp.node`), so one handler process can serve
  several nodes without one node reading another's documents.

A relative path is relative to the handler process's working directory. A
missing folder is an error, not 0 (as in handlers/keyword_count.py).

Running it: the package comes from the handler's `requirements:`, which `hive
up` installs into an environment of the handler's own (about 50 MB to download,
numpy and the tokenizer included; 140 MB installed); the hive's own environment
needs nothing:

    handlers:
      embed:
        file: ../handlers/embedding_similarity.py
        requirements: ["wordllama==0.4.0.post1"]
        env: {DOCS_ROOT: "${HIVE_DIR}/docs", SIMILARITY_THRESHOLD: "0.5"}

then `hive up`, and `hive handler test --handler embed --query "honey bees"` to
try it in that environment. The model loads once, when the handler daemon
imports this file (a fraction of a second); a call embeds the node's documents
(milliseconds for a few pages).

What it is not: a reader. The embedding is about which words a text uses, not
what it says about them: a note that rules something out is as close to the
topic as one that confirms it, and a long document drifts toward the average
of everything it contains (keep one subject per file, or split documents).
Tokens are case-sensitive ("PENICILLIN" scores lower than "penicillin").

Where the data goes: nowhere. The documents are read and embedded in this
process on the node's machine; the model is local and is never given a network
address (a missing model file is an error, not a download). What leaves toward
the hive is only the count, as secret shares. Error messages name settings and
folders but never contain document text.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from beehive import Computation, handler

try:
    import numpy as np
    import wordllama
    from wordllama import WordLlama
except ImportError as exc:  # the hive's own environment: no requirements installed
    raise ImportError(
        "handlers/embedding_similarity.py needs the wordllama package: give its handler "
        '`requirements: ["wordllama==0.4.0.post1"]` in hive.yaml and run `hive up`'
    ) from exc

DEFAULT_THRESHOLD = 0.5
MAX_COUNT = 1000
DOCUMENT_SUFFIXES = (".txt", ".md")
# The embedding is a mean over tokens, so the first 50,000 characters (about
# 12,000 tokens) already fix a document's direction; the cut bounds the memory
# and time one huge file can take (tokens x 256 floats, untruncated otherwise).
MAX_DOCUMENT_CHARS = 50_000

# Loaded once, when the daemon imports this file, not per call. wordllama
# 0.4.0.post1 looks for its bundled tokenizer in `wordllama/tokenizer/` but
# ships it in `wordllama/tokenizers/`, so a plain `WordLlama.load()` fetches the
# tokenizer from Hugging Face (with `requests`: HF_HUB_OFFLINE does not stop it)
# into ~/.cache/wordllama. As `cache_dir`, the package's own folder is where
# both bundled files are found (weights in weights/, tokenizer in tokenizers/);
# `disable_download` makes a missing file an error instead of a download.
MODEL = WordLlama.load(
    config="l2_supercat",
    dim=256,
    cache_dir=Path(wordllama.__file__).parent,
    disable_download=True,
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


def document_files(folder: Path) -> list[Path]:
    """The text files under `folder`, in a stable order (sorted paths)."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
    )


def threshold() -> float:
    raw = os.environ.get("SIMILARITY_THRESHOLD", "").strip()
    if not raw:
        return DEFAULT_THRESHOLD
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not -1.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"SIMILARITY_THRESHOLD must be a number from -1 to 1, not {raw!r}")
    return value


def unit_vector(text: str) -> np.ndarray | None:
    """The text's embedding scaled to length 1; None when it has no tokens."""
    vector = MODEL.embed(text)[0]
    length = float(np.linalg.norm(vector))
    return vector / length if length > 0.0 else None


@handler
def embedding_similarity(comp: Computation) -> int:
    topic = str(comp.metadata.get("topic") or comp.query).strip()
    if not topic:
        raise ValueError("empty topic: send a query or --metadata topic=TEXT")
    minimum = threshold()
    topic_vector = unit_vector(topic)
    if topic_vector is None:
        raise ValueError("the topic has no tokens the model knows")
    count = 0
    for path in document_files(documents_folder(comp)):
        # errors="replace": one badly encoded file should not fail the whole answer.
        text = path.read_text(encoding="utf-8", errors="replace")[:MAX_DOCUMENT_CHARS]
        # One document per call: a batch is padded to its longest text.
        vector = unit_vector(text) if text.strip() else None
        if vector is not None and float(vector @ topic_vector) >= minimum:
            count += 1
            if count >= MAX_COUNT:
                return MAX_COUNT
    return count
