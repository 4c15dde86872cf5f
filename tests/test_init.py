"""`hive init`: a new hive that validates and runs as written, and never clobbers a file.

What a user gets from `hive init` is checked the way they would use it: the
generated hive.yaml goes through `hive validate` in a subprocess with no settings,
the basic template is brought up on real processes and the round `init` prints is
run as printed, and the llm template's sample documents give the totals its README
promises. A refusal is checked to leave the folder byte for byte as it was.
"""

from __future__ import annotations

import glob
import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import REPO, make_hive_env, running_hive
from openai_standin import OpenAIStandIn

from beehive import Computation
from beehive.cli.init import README_BEGIN, TEMPLATES, hive_name
from beehive.cli.main import cli
from beehive.core.handler_env import read_env_file
from beehive.nectar.loader import load_handler
from beehive.topology.loader import load_topology

PACKAGE = REPO / "beehive"
TEMPLATES_DIR = PACKAGE / "templates" / "init"
#: Settings of the shell that would change what a generated hive.yaml resolves to.
AMBIENT = (
    "HIVE_DIR",
    "HIVE_FILE",
    "BEEHIVE_STATE_DIR",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "OPENAI_API_KEY",
    "HIVE_LLM_ENV_FILE",
    "DOCS_DIR",
    "DOCS_ROOT",
)


def hive(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real `hive` entry point in a subprocess (as tests/helpers.py's HiveCLI)."""
    return subprocess.run(
        [sys.executable, "-m", "beehive.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=120,
    )


def clean_env() -> dict[str, str]:
    env = make_hive_env()
    for name in AMBIENT:
        env.pop(name, None)
    return env


def init(*args: str) -> tuple[int, str, str]:
    """`hive init ARGS` in this process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, ["init", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and mtime: what "nothing written" means."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AMBIENT:
        monkeypatch.delenv(name, raising=False)


# -- what init writes -------------------------------------------------------------------


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_template_validates_right_after_init_with_no_settings(tmp_path: Path, template: str):
    proc = hive("init", "my-hive", "--template", template, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    folder = tmp_path / "my-hive"
    assert report["dir"] == str(folder) and report["template"] == template
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert sorted(report["files"]) == on_disk  # the report is complete and exact
    assert {"hive.yaml", "README.md"} <= set(on_disk)
    assert report["files"][0] == "hive.yaml"

    proc = hive("validate", "-f", "my-hive/hive.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "topology 'my-hive': 5 node(s)" in proc.stdout
    # Paths are relative to the file: the folder can move and still validate.
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    proc = hive("validate", "-f", str(moved / "hive.yaml"), cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_the_basic_template_is_the_demo_hive_with_a_port_from_the_environment(tmp_path: Path):
    assert init(str(tmp_path / "demo-like"))[0] == 0
    topo = load_topology(tmp_path / "demo-like" / "hive.yaml", env={"HIVE_NATS_PORT": "15999"})
    demo = load_topology(REPO / "topologies" / "demo.yaml", env={})
    assert topo.name == "demo-like"
    assert topo.nats.port == 15999
    assert load_topology(tmp_path / "demo-like" / "hive.yaml", env={}).nats.port == 14422
    assert {a: (n.role, n.handler) for a, n in topo.nodes.items()} == {
        a: (n.role, n.handler) for a, n in demo.nodes.items()
    }
    assert topo.handlers["query_length"].file == tmp_path / "demo-like/handlers/query_length.py"


def test_the_llm_template_reads_documents_beside_its_file_and_holds_no_key(tmp_path: Path):
    folder = tmp_path / "clinic"
    assert init(str(folder), "--template", "llm")[0] == 0
    # No HIVE_DIR in the environment: the loader's own ${HIVE_DIR} makes DOCS_ROOT
    # absolute, as a handler running in the state folder needs.
    topo = load_topology(folder / "hive.yaml", env={})
    llm, keywords = topo.handlers["llm"], topo.handlers["keywords"]
    assert llm.env["DOCS_ROOT"] == keywords.env["DOCS_ROOT"] == str(folder / "docs")
    assert llm.env["OPENAI_BASE_URL"] == "http://127.0.0.1:11434/v1"
    assert llm.env["OPENAI_MODEL"] == "llama3.2"
    assert float(llm.env["OPENAI_TIMEOUT"]) < llm.timeout
    assert llm.env_file == folder / "llm.env"
    assert read_env_file(folder / "llm.env") == {}  # comments only
    assert (folder / "llm.env").stat().st_mode & 0o777 == 0o600  # a key may go there
    env = {"OPENAI_BASE_URL": "http://gpu:8000/v1", "OPENAI_MODEL": "m", "HIVE_DIR": "/data"}
    topo = load_topology(folder / "hive.yaml", env=env)
    assert topo.handlers["llm"].env["OPENAI_BASE_URL"] == "http://gpu:8000/v1"
    assert topo.handlers["llm"].env["OPENAI_MODEL"] == "m"
    assert topo.handlers["keywords"].env["DOCS_ROOT"] == "/data/docs"
    assert sorted(p.name for p in (folder / "docs").iterdir()) == sorted(topo.nodes)


def test_the_llm_sample_documents_give_the_totals_init_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The generated handlers, on the generated documents: the keyword round and
    the yes/no round (against tests/openai_standin.py, a declared stand-in whose
    "model" says yes to documents that mention a leak) total what init promises."""
    folder = tmp_path / "h"
    assert init(str(folder), "--template", "llm")[0] == 0
    topo = load_topology(folder / "hive.yaml", env={})
    keyword_round, yes_no_round = TEMPLATES["llm"].rounds
    monkeypatch.setenv("DOCS_ROOT", str(folder / "docs"))

    def answer(handler_name: str, alias: str, query: str, metadata: tuple[str, ...]) -> int:
        assert topo.nodes[alias].handler == handler_name
        handler = load_handler(topo.handlers[handler_name].file)
        comp = Computation(
            query=query,
            proposer="alice",
            aggregators=["alice"],
            targets=[alias],
            node=alias,
            metadata=dict(m.split("=", 1) for m in metadata),
        )
        return handler(comp)

    counts = {
        alias: answer("keywords", alias, keyword_round.query, keyword_round.metadata)
        for alias in keyword_round.targets
    }
    assert counts == {"alice": 3, "bob": 1}
    assert sum(counts.values()) == keyword_round.expected == 4
    with OpenAIStandIn(yes_if="leak") as model:
        monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
        monkeypatch.setenv("OPENAI_MODEL", "stand-in")
        answers = {
            alias: answer("llm", alias, yes_no_round.query, ())
            for alias in ("charlie", "dave", "eve")
        }
    assert answers == {"charlie": 1, "dave": 0, "eve": 1}
    assert sum(answers.values()) == yes_no_round.expected == 2


def test_init_prints_the_files_and_the_next_commands(tmp_path: Path):
    code, stdout, _ = init(str(tmp_path / "h"), "--template", "llm")
    assert code == 0
    folder = tmp_path / "h"
    for expected in (
        f"wrote hive 'h' (template llm) in {folder}:",
        "  hive.yaml\n",
        "  handlers/llm_yes_no.py\n",
        "  llm.env\n",
        "docs/: 10 sample documents, a folder per node (alice, bob, charlie, dave, eve)",
        f"hive up -f {folder}/hive.yaml",
        f"hive down -f {folder}/hive.yaml",
        "--metadata keyword=leak",
        "# -> 4",
        "ollama",
    ):
        assert expected in stdout, expected
    assert "docs/alice/" not in stdout  # the list stays short


def test_the_readme_section_is_added_to_a_readme_that_exists(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("# My project\n\nSome text, no newline at the end.")
    readme.chmod(0o640)
    code, stdout, _ = init(str(tmp_path))
    assert code == 0
    assert "README.md (section added at the end)" in stdout
    text = readme.read_text()
    assert text.startswith("# My project\n\nSome text, no newline at the end.\n\n" + README_BEGIN)
    assert "hive up" in text and "# -> 75" in text
    assert readme.stat().st_mode & 0o777 == 0o640  # the user's file keeps its mode
    # --force replaces init's own section and nothing else of the README.
    readme.write_text(text.replace("hive status", "hive status  # edited") + "\nMore.\n")
    assert init(str(tmp_path), "--force")[0] == 0
    again = readme.read_text()
    assert again.count(README_BEGIN) == 1 and "# edited" not in again
    assert again.startswith("# My project\n") and again.endswith("\nMore.\n")


def test_a_folder_without_a_readme_gets_one_titled_after_the_hive(tmp_path: Path):
    assert init(str(tmp_path / "North Wing"))[0] == 0
    text = (tmp_path / "North Wing" / "README.md").read_text()
    assert text.startswith(f"# north-wing\n\n{README_BEGIN}\n## Running this hive\n")


def test_the_hive_is_named_after_its_folder():
    assert hive_name(Path("/x/My Hive")) == "my-hive"
    assert hive_name(Path("/x/2031 clinics!")) == "clinics"
    assert hive_name(Path("/x/2031")) == "hive"  # nothing valid left
    assert hive_name(Path("/x/" + "a" * 40)) == "a" * 32


# -- what init refuses ------------------------------------------------------------------


def test_init_refuses_to_overwrite_names_the_files_and_writes_nothing(tmp_path: Path):
    folder = tmp_path / "h"
    assert init(str(folder))[0] == 0
    (folder / "hive.yaml").write_text("# mine\n")
    before = snapshot(folder)
    for template in ("basic", "llm"):  # llm's other files are not written either
        proc = hive("init", "h", "--template", template, cwd=tmp_path)
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: h already has hive.yaml, "), proc.stderr
        assert "README.md (its hive init section)" in proc.stderr
        assert "nothing written" in proc.stderr and "--force" in proc.stderr
        assert snapshot(folder) == before
    assert not (folder / "docs").exists()
    # Any one file in the way is enough: another file's absence does not matter.
    (folder / "hive.yaml").unlink()
    (folder / "README.md").unlink()
    before = snapshot(folder)
    code, _, stderr = init(str(folder))
    assert code == 1 and "already has handlers/query_length.py:" in stderr
    assert snapshot(folder) == before


def test_force_overwrites_what_init_writes_and_leaves_other_files(tmp_path: Path):
    folder = tmp_path / "h"
    assert init(str(folder))[0] == 0
    (folder / "hive.yaml").write_text("# mine\n")
    (folder / "notes.txt").write_text("keep me\n")
    code, _, stderr = init(str(folder), "--force")
    assert code == 0, stderr
    assert "name: h\n" in (folder / "hive.yaml").read_text()
    assert (folder / "notes.txt").read_text() == "keep me\n"


def test_what_force_cannot_fix_is_refused_with_nothing_written(tmp_path: Path):
    (tmp_path / "handlers").write_text("a file where init needs a folder\n")
    (tmp_path / "hive.yaml").mkdir()
    before = snapshot(tmp_path)
    code, _, stderr = init(str(tmp_path), "--force")
    assert code == 1
    assert "handlers/query_length.py (a file is where its folder would be)" in stderr
    assert "hive.yaml (a folder)" in stderr and "nothing written" in stderr
    assert snapshot(tmp_path) == before and not (tmp_path / "README.md").exists()


def test_an_unknown_template_is_a_clear_error(tmp_path: Path):
    proc = hive("init", "h", "--template", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Invalid value for '--template': 'nope' is not one of 'basic', 'llm'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_explains_the_command():
    result = CliRunner().invoke(cli, ["init", "--help"])
    assert result.exit_code == 0
    assert "Usage: hive init [OPTIONS] [DIR]" in result.stdout.replace("cli init", "hive init")
    for word in ("--template [basic|llm]", "--force", "--json", "README.md", "never overwritten"):
        assert word in result.stdout, word


# -- the package ------------------------------------------------------------------------


def test_the_template_handlers_are_the_repositorys_example_handlers():
    """The templates ship copies (a wheel has no handlers/ folder): they must not drift."""
    copies = sorted(TEMPLATES_DIR.glob("*/handlers/*.py"))
    assert [p.name for p in copies] == ["query_length.py", "keyword_count.py", "llm_yes_no.py"]
    for copy in copies:
        original = REPO / "handlers" / copy.name
        assert copy.read_bytes() == original.read_bytes(), f"update {copy} from {original}"


def test_every_template_file_is_package_data():
    """pyproject.toml's package-data globs (setuptools' rules: recursive `**`) cover
    every file of beehive/templates/init, so a wheel install can init too."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["beehive"]
    shipped = {
        Path(match)
        for pattern in patterns
        for match in glob.glob(pattern, root_dir=PACKAGE, recursive=True)
    }
    files = {
        p.relative_to(PACKAGE)
        for p in TEMPLATES_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert len(files) >= 18
    assert files - shipped == set()


# -- end to end -------------------------------------------------------------------------


def test_the_basic_template_runs_and_the_printed_round_gives_its_total(short_tmp: Path):
    """`hive init`, then `hive up` and the `hive submit` line init printed, on
    real processes: the total is exact (three targets answering len(query))."""
    env = make_hive_env()
    for name in AMBIENT:
        env.pop(name, None)
    proc = hive("init", "hive", cwd=short_tmp, env=env)
    assert proc.returncode == 0, proc.stderr
    submit = next(
        line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("hive submit")
    )
    args = shlex.split(submit.split("    # ->")[0])
    assert args[:2] == ["hive", "submit"] and args[3:5] == ["-f", "hive/hive.yaml"]
    round_args = [a for a in args[5:] if a != "--wait"]
    with running_hive(short_tmp / "state", env, topology=short_tmp / "hive" / "hive.yaml") as h:
        result = h.json("submit", args[2], *round_args, "--json")
    assert result["status"] == "complete", result
    assert result["result"] == 3 * len("What is your secret value") == 75
    assert result["contributors"] == ["charlie", "dave", "eve"]
