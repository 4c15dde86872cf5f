"""The embedding example handler (handlers/embedding_similarity.py), run for real.

No stand-in here: the model is the real one, WordLlama, which ships its weights
inside its wheel and runs on the CPU. The hive builds the handler's environment
itself from `requirements:` during `hive up` (the package is not in the test
environment), so the test needs the package index; without it, it is skipped,
with the reason shown (`pytest -rs`), never passed.

The documents are chosen so that each one is clearly on or off the topic: with
wordllama 0.4.0.post1, the on-topic ones score 0.56 to 0.73 and every other one
at most 0.13, far from the threshold of 0.3 either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, HiveCLI, hive_down, make_hive_env

REQUIREMENT = "wordllama==0.4.0.post1"
THRESHOLD = "0.3"
BEES = "honey bees and beekeeping"

#: alias -> {path under the node's folder: text}
DOCUMENTS = {
    "alice": {
        "hive-inspection.txt": "The beekeeper opened the hive, checked the honeycomb frames "
        "and found the queen bee laying eggs.",  # 0.64
        "harvest.md": "Our bee colonies produced forty kilograms of honey this summer; "
        "the beekeeping club will extract it next week.",  # 0.60
        "council.txt": "The city council approved the budget for repairing roads and "
        "bridges next year.",  # 0.05
    },
    "bob": {
        "recipe.txt": "Preheat the oven, mix flour, butter and sugar, and bake the cake "
        "for thirty minutes.",  # 0.07 (0.73 for the cake topic)
        "timetable.md": "The train to the airport leaves every twenty minutes from "
        "platform four.",  # -0.01
    },
    "carol": {
        "pollination.txt": "Honey bees collect nectar and pollen from flowers and bring it "
        "back to the hive.",  # 0.62
        "report.md": "# Quarterly report\n\nSales of laptops and printers grew by ten "
        "percent; the office moves in May.",  # -0.00
    },
    "dave": {
        "notes/apiary.md": "# Apiary log\n\nInspected six beehives. Two colonies swarmed; "
        "the bees are calm and the honey supers are full.",  # 0.56, in a subfolder
        "match.txt": "The football match ended in a draw after extra time and a missed "
        "penalty.",  # 0.03
        "bees.csv": "honey,bees,hive,beekeeping,beekeeper,honeycomb",  # not a text document
    },
}
BEE_DOCUMENTS = {"alice": 2, "bob": 0, "carol": 1, "dave": 1}


def index_unreachable(folder: Path) -> str | None:
    """Why the package index cannot give us wordllama, or None when it can."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--quiet", "--dest", str(folder), REQUIREMENT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"`pip download {REQUIREMENT}` did not finish within 60 s"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return f"`pip download {REQUIREMENT}` failed: {lines[-1] if lines else proc.returncode}"


def write_topology(folder: Path, docs: Path) -> Path:
    doc = {
        "version": 1,
        "name": "embed",
        "nats": {"host": "127.0.0.1", "port": "${HIVE_NATS_PORT}"},
        "handlers": {
            "embed": {
                "file": str(REPO / "handlers" / "embedding_similarity.py"),
                "requirements": [REQUIREMENT],
                "timeout": 20,
                "env": {"DOCS_ROOT": str(docs), "SIMILARITY_THRESHOLD": THRESHOLD},
            }
        },
        "nodes": {
            "alice": {"role": "heavy", "handler": "embed"},
            "bob": {"role": "heavy", "handler": "embed"},
            "carol": {"role": "light", "handler": "embed"},
            "dave": {"role": "light", "handler": "embed"},
        },
    }
    path = folder / "hive.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def test_the_embedding_example_counts_the_documents_on_a_topic_end_to_end(short_tmp: Path):
    """`hive up` builds the handler's own environment (wordllama, numpy, tokenizers)
    and starts its daemon; each node answers how many of its own documents are
    about the topic, and the round's total is their exact sum."""
    reason = index_unreachable(short_tmp / "download")
    if reason:
        pytest.skip(f"the package index cannot be reached: {reason}")
    docs = short_tmp / "docs"
    for alias, files in DOCUMENTS.items():
        for name, text in files.items():
            path = docs / alias / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
    hive = HiveCLI(write_topology(short_tmp, docs), short_tmp / "state", make_hive_env())
    try:
        # Not running_hive: building the environment may take longer than its 60 s.
        up = hive.run("up", "--timeout", "300", timeout=360)
        assert "installing wordllama==0.4.0.post1" in up.stderr
        programs = {p["name"] for p in hive.json("status", "--json")["processes"]}
        assert "handler-embed" in programs

        common = ("--proposer", "alice", "--aggregators", "alice,bob", "--deadline", "30")
        targets = ("--targets", "alice,bob,carol,dave", "--json")
        bees = hive.json("submit", BEES, *common, *targets)
        assert (bees["status"], bees["reason"]) == ("complete", None)
        assert bees["result"] == sum(BEE_DOCUMENTS.values()) == 4
        assert bees["contributors"] == ["alice", "bob", "carol", "dave"]

        # The topic from the metadata wins over the question: only bob's recipe.
        cake = hive.json(
            "submit", "How many recipes?", *common, "--metadata", "topic=baking a cake in the oven",
            *targets,
        )  # fmt: skip
        assert (cake["status"], cake["result"]) == ("complete", 1)
    finally:
        hive_down(hive)
