"""The example handlers (handlers/keyword_count.py, handlers/llm_yes_no.py) and
their demo topology (topologies/llm-demo.yaml), run for real.

The model is tests/openai_standin.py, a declared stand-in: an OpenAI-compatible
server whose "model" is a substring rule, since no real model can run in CI. The
handler's HTTP, JSON, authentication, timeout and parsing code runs unchanged
against it, in this process (unit tests) and in the hive's handler daemons
(the end-to-end test).
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, make_hive_env, running_hive
from openai_standin import OpenAIStandIn

from beehive import Computation
from beehive.nectar.handler import Handler
from beehive.nectar.loader import load_handler
from beehive.topology.loader import load_topology

EXAMPLE_DOCS = REPO / "examples" / "docs"
DEMO_TOPOLOGY = REPO / "topologies" / "llm-demo.yaml"
QUESTION = "Does any record mention a penicillin allergy?"
#: examples/README.md's table: what each node's documents give.
PENICILLIN_COUNTS = {"alice": 3, "bob": 1, "charlie": 1, "dave": 0, "eve": 2}
PENICILLIN_ALLERGY = {"alice": 1, "bob": 1, "charlie": 1, "dave": 0, "eve": 1}
SECRET_LINE = "Patient Q-777 is allergic to penicillin"  # must never show in an error


@pytest.fixture(scope="module")
def keyword_count() -> Handler:
    return load_handler(REPO / "handlers" / "keyword_count.py")


@pytest.fixture(scope="module")
def llm_yes_no() -> Handler:
    return load_handler(REPO / "handlers" / "llm_yes_no.py")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets exactly the settings it means: none come from the shell."""
    for name in (
        "DOCS_DIR",
        "DOCS_ROOT",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "OPENAI_API_KEY",
        "OPENAI_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)


def comp(query: str = QUESTION, node: str | None = "charlie", **metadata: str) -> Computation:
    return Computation(
        query=query,
        proposer="alice",
        aggregators=["alice"],
        targets=["charlie"],
        node=node,
        metadata=metadata,
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStandIn]:
    """The stand-in, saying yes to documents that mention "penicillin"."""
    with OpenAIStandIn(yes_if="penicillin") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_MODEL", "unit-model")
        yield server


# -- keyword_count ----------------------------------------------------------------------


def test_keyword_count_counts_case_insensitively_in_txt_and_md_files_only(
    keyword_count: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "a.txt", "Penicillin. penicillin, PENICILLIN!")  # 3
    write(tmp_path / "notes" / "b.md", "penicillin-class antibiotics")  # 1, in a subfolder
    write(tmp_path / "c.csv", "penicillin,penicillin")  # not a text document: ignored
    write(tmp_path / "d.txt", "amoxicillin only")  # 0
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    assert keyword_count(comp("penicillin")) == 4
    # metadata's keyword wins over the query text
    assert keyword_count(comp("How often is penicillin mentioned?", keyword="PENICILLIN")) == 4
    assert keyword_count(comp("How often is penicillin mentioned?")) == 0
    assert keyword_count(comp("amoxicillin")) == 1


def test_keyword_count_reads_the_answering_nodes_folder_of_docs_root(
    keyword_count: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "charlie" / "n.txt", "flu flu")
    write(tmp_path / "dave" / "n.txt", "flu flu flu flu flu")
    monkeypatch.setenv("DOCS_ROOT", str(tmp_path))
    assert keyword_count(comp("flu", node="charlie")) == 2
    assert keyword_count(comp("flu", node="dave")) == 5
    monkeypatch.setenv("DOCS_DIR", str(tmp_path / "dave"))  # DOCS_DIR wins
    assert keyword_count(comp("flu", node="charlie")) == 5


def test_keyword_count_is_capped(
    keyword_count: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "big.txt", "x " * 1500)
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    assert keyword_count(comp("x")) == 1000


def test_keyword_count_refuses_a_missing_or_unknown_folder(
    keyword_count: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with pytest.raises(ValueError, match="DOCS_DIR"):
        keyword_count(comp("x"))  # nothing configured
    monkeypatch.setenv("DOCS_ROOT", str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        keyword_count(comp("x", node="charlie"))  # no charlie/ folder: not a silent 0
    with pytest.raises(ValueError, match="alias"):
        keyword_count(comp("x", node=None))


# -- llm_yes_no -------------------------------------------------------------------------


def test_llm_answers_1_for_yes_and_0_for_no(
    llm_yes_no: Handler, model: OpenAIStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "charlie" / "visit.txt", "Allergies: PENICILLIN (hives).")
    write(tmp_path / "dave" / "visit.md", "No known drug allergies; amoxicillin given.")
    monkeypatch.setenv("DOCS_ROOT", str(tmp_path))
    assert llm_yes_no(comp(node="charlie")) == 1
    # The question names penicillin too: only the documents may make it a yes.
    assert llm_yes_no(comp(node="dave")) == 0
    assert len(model.requests) == 2
    dave_prompt = model.requests[1].messages[-1]["content"]
    assert "amoxicillin given" in dave_prompt and dave_prompt.endswith(QUESTION)
    assert "PENICILLIN" not in dave_prompt  # charlie's documents are not dave's


def test_llm_sends_the_model_the_key_and_a_yes_no_instruction(
    llm_yes_no: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "n.txt", "penicillin allergy")
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_MODEL", "llama3.2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unit-123")
    with OpenAIStandIn(yes_if="penicillin", api_key="sk-unit-123") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")  # a trailing / is fine
        assert llm_yes_no(comp()) == 1
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        with pytest.raises(RuntimeError, match=r"HTTP 401.*OPENAI_API_KEY") as refused:
            llm_yes_no(comp())
    first, second = server.requests
    assert (first.model, first.authorization, first.status) == (
        "llama3.2",
        "Bearer sk-unit-123",
        200,
    )
    assert (second.authorization, second.status) == ("Bearer sk-wrong", 401)
    system = first.messages[0]
    assert system["role"] == "system" and "yes or no" in system["content"]
    assert "sk-wrong" not in str(refused.value)


def test_llm_sends_no_authorization_without_a_key(
    llm_yes_no: Handler, model: OpenAIStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "n.txt", "nothing relevant")
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    assert llm_yes_no(comp()) == 0
    assert [(r.model, r.authorization) for r in model.requests] == [("unit-model", None)]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("yes", 1), ("Yes.", 1), ("YES, it does", 1), ("no", 0), ("No.", 0), ("  **no**\n", 0)],
)
def test_llm_reads_the_first_word_of_the_reply(
    llm_yes_no: Handler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reply: str,
    expected: int,
):
    write(tmp_path / "n.txt", "notes")
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_MODEL", "m")
    with OpenAIStandIn(reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        assert llm_yes_no(comp()) == expected


@pytest.mark.parametrize(
    "reply", [f"Yesterday's note: {SECRET_LINE}", f"{SECRET_LINE}. So yes.", "", "maybe"]
)
def test_a_reply_that_is_neither_yes_nor_no_is_an_error_that_shows_no_document(
    llm_yes_no: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply: str
):
    write(tmp_path / "n.txt", SECRET_LINE)
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_MODEL", "m")
    with OpenAIStandIn(reply=reply) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        with pytest.raises(ValueError, match="neither yes nor no") as error:
            llm_yes_no(comp())
    assert SECRET_LINE in server.requests[0].messages[-1]["content"]  # it was sent...
    for fragment in ("Q-777", "allergic", "Yesterday"):  # ...but is not in the error
        assert fragment not in str(error.value)


def test_documents_are_cut_to_a_bounded_prompt(
    llm_yes_no: Handler, model: OpenAIStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    limit = sys.modules[llm_yes_no.__module__].MAX_DOCUMENT_CHARS
    write(tmp_path / "a.txt", "filler " * limit)  # sorted first: fills the window
    write(tmp_path / "b.txt", "penicillin allergy")  # past the limit: never sent
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    assert llm_yes_no(comp()) == 0
    prompt = model.requests[0].messages[-1]["content"]
    assert len(prompt) <= limit + 200  # the documents, plus the framing and the question
    assert prompt.endswith(QUESTION)  # the question survives the cut


def test_a_model_that_does_not_answer_in_time_is_a_timeout(
    llm_yes_no: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "n.txt", "notes")
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_MODEL", "m")
    monkeypatch.setenv("OPENAI_TIMEOUT", "0.3")
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
        with pytest.raises(TimeoutError, match=r"within 0\.3s"):
            llm_yes_no(comp())


def test_an_unreachable_endpoint_or_missing_setting_is_named(
    llm_yes_no: Handler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(tmp_path / "n.txt", "notes")
    monkeypatch.setenv("DOCS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        llm_yes_no(comp())
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ValueError, match="OPENAI_MODEL"):
        llm_yes_no(comp())
    monkeypatch.setenv("OPENAI_MODEL", "m")
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        llm_yes_no(comp())


# -- the shipped examples ---------------------------------------------------------------


@pytest.mark.parametrize("alias", sorted(PENICILLIN_COUNTS))
def test_the_example_documents_give_the_documented_answers(
    alias: str,
    keyword_count: Handler,
    llm_yes_no: Handler,
    model: OpenAIStandIn,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("DOCS_ROOT", str(EXAMPLE_DOCS))
    assert keyword_count(comp("x", node=alias, keyword="penicillin")) == PENICILLIN_COUNTS[alias]
    assert llm_yes_no(comp(node=alias)) == PENICILLIN_ALLERGY[alias]


def test_the_demo_topology_wires_both_handlers_with_their_settings(tmp_path: Path):
    env = {"HIVE_DOCS": str(tmp_path), "EVE_OPENAI_MODEL": "tiny"}
    topo = load_topology(DEMO_TOPOLOGY, env=env)
    llm, keywords = topo.handlers["llm"], topo.handlers["keywords"]
    assert llm.file == REPO / "handlers" / "llm_yes_no.py"
    assert llm.env["OPENAI_BASE_URL"] == "http://127.0.0.1:11434/v1"  # ollama's default
    assert llm.env["DOCS_ROOT"] == keywords.env["DOCS_ROOT"] == str(tmp_path)
    assert llm.env_file == REPO / "examples" / "llm.env"
    assert float(llm.env["OPENAI_TIMEOUT"]) < llm.timeout
    assert topo.nodes["eve"].env == {"OPENAI_MODEL": "tiny"}
    assert {a: n.handler for a, n in topo.nodes.items()} == {
        "alice": "keywords",
        "bob": "keywords",
        "charlie": "llm",
        "dave": "llm",
        "eve": "llm",
    }


# -- end to end -------------------------------------------------------------------------


def test_the_llm_demo_runs_end_to_end_and_gives_the_documented_totals(short_tmp: Path):
    """topologies/llm-demo.yaml on real processes: the llm handler's daemons call
    the stand-in with the model and key their env/env_file give them, and both
    rounds give the exact totals of the example documents."""
    docs = short_tmp / "docs"
    shutil.copytree(EXAMPLE_DOCS, docs)
    env_file = short_tmp / "llm.env"
    env_file.write_text("# the participant's secret, outside hive.yaml\nOPENAI_API_KEY=sk-e2e\n")
    with OpenAIStandIn(yes_if="penicillin", api_key="sk-e2e") as server:
        env = make_hive_env()
        env.pop("OPENAI_API_KEY", None)
        env.update(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_MODEL="e2e-model",
            EVE_OPENAI_MODEL="e2e-small",
            HIVE_DOCS=str(docs),
            HIVE_LLM_ENV_FILE=str(env_file),
        )
        with running_hive(short_tmp / "state", env, topology=DEMO_TOPOLOGY) as hive:
            programs = {p["name"] for p in hive.json("status", "--json")["processes"]}
            assert {"handler-llm", "handler-llm@eve", "handler-keywords"} <= programs

            common = ("--proposer", "alice", "--aggregators", "alice,bob", "--deadline", "20")
            llm = hive.json("submit", QUESTION, *common, "--targets", "charlie,dave,eve", "--json")
            assert (llm["status"], llm["reason"]) == ("complete", None)
            assert llm["result"] == 2  # charlie yes, dave no, eve yes
            assert llm["contributors"] == ["charlie", "dave", "eve"]
            assert sorted(map(str, server.models())) == ["e2e-model", "e2e-model", "e2e-small"]
            assert {(r.authorization, r.status) for r in server.requests} == {
                ("Bearer sk-e2e", 200)
            }

            keywords = hive.json(
                "submit",
                "How often is penicillin mentioned?",
                *common,
                "--targets",
                "alice,bob",
                "--metadata",
                "keyword=penicillin",
                "--json",
            )
            assert (keywords["status"], keywords["result"]) == ("complete", 4)  # 3 + 1
            assert len(server.requests) == 3  # the keyword handler asked no model
