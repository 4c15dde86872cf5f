"""The hive.yaml loader: real files under tmp_path, every error located by line and field."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beehive.topology import Topology, TopologyError, load_topology
from beehive.topology.loader import interpolate, topology_to_yaml

VALID = """\
version: 1
name: test
nats:
  host: 127.0.0.1
  port: ${HIVE_NATS_PORT:-14222}
defaults:
  deadline: 30
handlers:
  query_length:
    file: ../handlers/query_length.py
    timeout: 10
nodes:
  alice:   {role: heavy, handler: query_length}
  bob:     {role: heavy, handler: query_length}
  charlie: {role: heavy, handler: query_length}
  dave:    {role: light, handler: query_length}
  eve:     {role: light, handler: query_length}
"""

MINIMAL = """\
name: tiny
nodes:
  alice: {role: heavy}
"""


@pytest.fixture
def hive(tmp_path: Path):
    """Write a topology at tmp_path/topologies/hive.yaml with a real handler file beside it."""
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "query_length.py").write_text("def handle(q):\n    return 1\n")
    (tmp_path / "topologies").mkdir()

    def write(text: str, name: str = "hive.yaml") -> Path:
        path = tmp_path / "topologies" / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def load_error(path: Path, env: dict[str, str] | None = None) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load_topology(path, env=env or {})
    return info.value


def problems(err: TopologyError) -> set[tuple[int | None, str | None]]:
    return {(p.line, p.field) for p in err.problems}


# ---------------------------------------------------------------- valid files


def test_valid_file_loads_with_defaults_and_absolute_handler_path(hive, tmp_path):
    topo = load_topology(hive(VALID), env={})
    assert isinstance(topo, Topology)
    assert topo.name == "test"
    assert topo.nats.port == 14222 and topo.nats.embedded
    assert topo.defaults.deadline == 30.0
    handler = topo.handlers["query_length"]
    assert handler.file.is_absolute()
    assert handler.file == (tmp_path / "handlers" / "query_length.py").resolve()
    assert handler.timeout == 10.0
    assert topo.heavy() == ["alice", "bob", "charlie"]
    assert topo.bound_nodes("query_length") == ["alice", "bob", "charlie", "dave", "eve"]


def test_minimal_file_fills_every_default(hive):
    topo = load_topology(hive(MINIMAL), env={})
    assert topo.version == 1
    assert topo.nats.host == "127.0.0.1" and topo.nats.port == 4222 and topo.nats.url is None
    assert topo.defaults.deadline == 30.0
    assert topo.handlers == {}
    assert topo.nodes["alice"].handler is None


def test_relative_topology_path_resolves_against_its_folder(hive, tmp_path, monkeypatch):
    hive(VALID)
    monkeypatch.chdir(tmp_path)
    topo = load_topology(Path("topologies/hive.yaml"), env={})
    assert topo.handlers["query_length"].file == (tmp_path / "handlers/query_length.py").resolve()


def test_env_defaults_to_os_environ(hive, monkeypatch):
    monkeypatch.setenv("HIVE_NATS_PORT", "15000")
    assert load_topology(hive(VALID)).nats.port == 15000


def test_yaml_12_booleans_keep_names_like_no_as_strings(hive):
    topo = load_topology(hive("name: tiny\nnodes:\n  no: {role: heavy}\n  on: {role: light}\n"))
    assert set(topo.nodes) == {"no", "on"}


def test_merge_keys_are_supported_and_not_duplicates(hive):
    path = hive(
        """\
        name: tiny
        x-heavy: &heavy {role: heavy}
        nodes:
          alice: {<<: *heavy, handler: null}
        """
    )
    # `x-heavy` is an unknown top-level field, so this is rejected — but for the right reason.
    err = load_error(path)
    assert problems(err) == {(2, "x-heavy")}
    assert "unknown field 'x-heavy'" in err.message


def test_loading_never_writes(hive, tmp_path):
    good, broken = hive(VALID), hive("name: [\n", name="broken.yaml")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    load_topology(good, env={})
    with pytest.raises(TopologyError):
        load_topology(broken, env={})
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before


# ---------------------------------------------------------------- interpolation


INTERP = """\
name: ${NAME}
nats:
  host: ${HOST:-10.0.0.1}
  port: ${PORT:?set PORT to the NATS port}
  url: "nats://$${NOT_A_VAR}:${PORT}"
nodes:
  alice: {role: heavy}
"""


def test_interpolation_three_forms_and_escape(hive):
    topo = load_topology(hive(INTERP), env={"NAME": "prod", "PORT": "4333"})
    assert topo.name == "prod"
    assert topo.nats.host == "10.0.0.1"  # default used
    assert topo.nats.port == 4333  # "4333" → int by pydantic lax mode
    assert topo.nats.url == "nats://${NOT_A_VAR}:4333"


def test_interpolation_set_value_beats_default(hive):
    topo = load_topology(hive(INTERP), env={"NAME": "prod", "PORT": "1", "HOST": "h"})
    assert topo.nats.host == "h"


def test_exact_scalar_default_becomes_int_port(hive):
    topo = load_topology(hive(VALID), env={})
    assert topo.nats.port == 14222
    assert isinstance(topo.nats.port, int)


def test_unset_variable_is_an_error_naming_it_and_its_line(hive):
    err = load_error(hive(INTERP), env={"PORT": "1"})
    assert (err.line, err.field) == (1, "name")
    assert "NAME" in err.message and "not set" in err.message


def test_required_variable_shows_its_message(hive):
    err = load_error(hive(INTERP), env={"NAME": "prod"})
    # PORT is used twice (port and url): both are reported, the message from `:?` shown.
    assert problems(err) == {(4, "nats.port"), (5, "nats.url")}
    assert "set PORT to the NATS port" in str(err).splitlines()[0]
    assert err.field == "nats.port"


def test_malformed_reference_is_an_error(hive):
    err = load_error(hive("name: ${1BAD}\nnodes:\n  alice: {role: heavy}\n"))
    assert (err.line, err.field) == (1, "name")
    assert "bad variable reference" in err.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain $HOME and $$ stay", "plain $HOME and $$ stay"),
        ("$${X}", "${X}"),
        ("a${A}b${B:-d}c", "a1bdc"),
        ("${E:-fallback}", "fallback"),  # set but empty counts as unset for :-
        ("${A:-x:-y}", "1"),
    ],
)
def test_interpolate_cases(text, expected):
    assert interpolate(text, {"A": "1", "E": ""}) == expected


@given(st.text())
def test_escape_round_trips_any_text(text):
    escaped = text.replace("${", "$${")
    assert interpolate(escaped, {}) == text


# ---------------------------------------------------------------- duplicate keys


def test_duplicate_top_level_key_names_both_lines(hive):
    err = load_error(hive("name: one\nnodes:\n  alice: {role: heavy}\nname: two\n"))
    assert (err.line, err.field) == (4, "name")
    assert "duplicate key 'name'" in err.message
    assert "line 1" in err.message and "line 4" in err.message


def test_duplicate_nested_key_names_both_lines(hive):
    path = hive(
        """\
        name: tiny
        nodes:
          alice: {role: heavy}
          bob:
            role: light
            role: heavy
          alice: {role: light}
        """
    )
    err = load_error(path)
    assert problems(err) == {(6, "nodes.bob.role"), (7, "nodes.alice")}
    first, second = str(err).splitlines()
    assert first.startswith(f"{path}:6: nodes.bob.role: duplicate key 'role'")
    assert "line 5" in first
    assert second.startswith(f"{path}:7: nodes.alice: duplicate key 'alice'")
    assert "line 3" in second


def test_duplicate_key_in_flow_mapping(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: heavy, role: light}\n"))
    assert (err.line, err.field) == (3, "nodes.alice.role")


# ---------------------------------------------------------------- schema errors


def test_unknown_field(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice:\n    role: heavy\n    rolle: light\n"))
    assert (err.line, err.field) == (5, "nodes.alice.rolle")
    assert "unknown field 'rolle'" in err.message
    assert err.hint is not None and "did you mean 'role'" in err.hint


def test_unknown_top_level_field(hive):
    err = load_error(hive("name: tiny\nnode:\n  alice: {role: heavy}\n"))
    assert problems(err) == {(2, "node"), (1, "nodes")}  # typo + the missing field


def test_bad_role(hive):
    path = hive(VALID.replace("dave:    {role: light", "dave:    {role: medium"))
    err = load_error(path)
    assert (err.line, err.field) == (16, "nodes.dave.role")
    assert "Input should be 'heavy' or 'light'" in err.message and "'medium'" in err.message
    assert str(err).startswith(f"{path}:16: nodes.dave.role: Input should be 'heavy' or 'light'")
    assert str(err).endswith("— fix the value and run `hive validate`")


def test_bad_alias_is_located_at_its_key(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: heavy}\n  Bad_Bob: {role: light}\n"))
    assert (err.line, err.field) == (4, "nodes.Bad_Bob")
    assert "'Bad_Bob' is not valid" in err.message


def test_bad_handler_name_is_located_at_its_key(hive):
    path = hive(
        """\
        name: tiny
        handlers:
          Query: {file: ../handlers/query_length.py}
        nodes:
          alice: {role: heavy}
        """
    )
    err = load_error(path)
    assert (err.line, err.field) == (3, "handlers.Query")


def test_bad_topology_name(hive):
    err = load_error(hive("name: Not A Name\nnodes:\n  alice: {role: heavy}\n"))
    assert (err.line, err.field) == (1, "name")


def test_no_heavy_node_is_located_at_nodes(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: light}\n"))
    assert (err.line, err.field) == (2, "nodes")
    assert "no heavy node" in err.message


def test_unknown_handler_reference(hive):
    path = hive(
        VALID.replace(
            "eve:     {role: light, handler: query_length}",
            "eve:     {role: light, handler: query_lenght}",
        )
    )
    err = load_error(path)
    assert (err.line, err.field) == (17, "nodes.eve.handler")
    assert "'query_lenght'" in err.message and "declared: query_length" in err.message
    assert err.hint == "did you mean 'query_length'?"


def test_every_unknown_handler_reference_is_reported(hive):
    path = hive(
        "name: tiny\nnodes:\n  alice: {role: heavy, handler: a}\n  bob: {role: light, handler: b}\n"
    )
    err = load_error(path)
    assert problems(err) == {(3, "nodes.alice.handler"), (4, "nodes.bob.handler")}


def test_missing_handler_file(hive, tmp_path):
    path = hive(VALID.replace("../handlers/query_length.py", "../handlers/nope.py"))
    err = load_error(path)
    assert (err.line, err.field) == (10, "handlers.query_length.file")
    assert str((tmp_path / "handlers" / "nope.py").resolve()) in err.message


def test_handler_file_that_is_a_folder(hive):
    err = load_error(hive(VALID.replace("../handlers/query_length.py", "../handlers")))
    assert (err.line, err.field) == (10, "handlers.query_length.file")
    assert "is not a file" in err.message


def test_missing_required_field_points_at_parent(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {handler: null}\n"))
    assert (err.line, err.field) == (3, "nodes.alice.role")
    assert err.message == "required field is missing"


def test_non_string_alias_key(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: heavy}\n  12: {role: light}\n"))
    assert (err.line, err.field) == (4, "nodes.12")


def test_several_errors_reported_together(hive, tmp_path):
    path = hive(
        """\
        version: 1
        name: tiny
        nats:
          port: 99999999
        handlers:
          h: {file: ../handlers/missing.py, timeout: 10}
        nodes:
          alice: {role: heavy, handler: h}
          bob: {role: medium}
          Carol: {role: light}
          dave: {role: light, handler: other}
          eve: {role: light, colour: blue}
        """
    )
    err = load_error(path)
    assert problems(err) == {
        (4, "nats.port"),
        (6, "handlers.h.file"),
        (9, "nodes.bob.role"),
        (10, "nodes.Carol"),
        (11, "nodes.dave.handler"),
        (12, "nodes.eve.colour"),
    }
    lines = str(err).splitlines()
    assert len(lines) == 6
    assert [line.split(":")[1] for line in lines] == ["4", "6", "9", "10", "11", "12"]
    assert all(line.startswith(f"{path}:") for line in lines)
    assert (err.line, err.field) == (4, "nats.port")  # the first one headlines


# ---------------------------------------------------------------- file-level errors


def test_yaml_syntax_error_has_a_line(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: heavy\n  bob: x\n"))
    assert err.line is not None and 3 <= err.line <= 5
    assert err.field is None
    assert "YAML" in err.message


def test_yaml_bad_indentation_line(hive):
    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: heavy}\n bob: x\n"))
    assert err.line == 4
    assert err.field is None


def test_empty_file(hive):
    for text in ("", "# only a comment\n", "---\n"):
        err = load_error(hive(text))
        assert (err.line, err.field) == (None, None)
        assert "empty" in err.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_non_mapping_top_level(hive, text):
    err = load_error(hive(text))
    assert (err.line, err.field) == (1, None)
    assert "top level must be a mapping" in err.message


def test_file_not_found(tmp_path):
    err = load_error(tmp_path / "nope.yaml")
    assert (err.line, err.field) == (None, None)
    assert "not found" in err.message
    assert str(err).startswith(f"{tmp_path / 'nope.yaml'}: topology file not found")


def test_multiple_documents_rejected(hive):
    err = load_error(hive(MINIMAL + "---\n" + MINIMAL))
    assert err.line == 4
    assert "single document" in err.message


def test_python_tags_rejected(hive):
    err = load_error(hive("name: !!python/name:os.system x\nnodes:\n  alice: {role: heavy}\n"))
    assert (err.line, err.field) == (1, "name")


def test_error_pickles(hive):
    import pickle

    err = load_error(hive("name: tiny\nnodes:\n  alice: {role: light}\n"))
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.line == err.line


# ---------------------------------------------------------------- topology_to_yaml


def test_to_yaml_is_deterministic_and_reloads_equal(hive, tmp_path):
    path = hive(VALID)
    first = topology_to_yaml(load_topology(path, env={}))
    second = topology_to_yaml(load_topology(path, env={}))
    assert first == second
    assert "deadline: 30.0" in first and "url: null" in first  # defaults filled
    assert str((tmp_path / "handlers" / "query_length.py").resolve()) in first

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "resolved.yaml").write_text(first)
    again = load_topology(elsewhere / "resolved.yaml", env={})
    assert again == load_topology(path, env={})
    assert topology_to_yaml(again) == first


def test_to_yaml_escapes_literal_interpolation(hive, tmp_path):
    topo = load_topology(hive(INTERP), env={"NAME": "prod", "PORT": "4333"})
    text = topology_to_yaml(topo)
    assert "$${NOT_A_VAR}" in text
    (tmp_path / "out.yaml").write_text(text)
    assert load_topology(tmp_path / "out.yaml", env={}) == topo


def test_shipped_topologies_parse(monkeypatch):
    """topologies/*.yaml: only the handler file (written by another module) may be missing."""
    root = Path(__file__).resolve().parent.parent / "topologies"
    monkeypatch.delenv("HIVE_NATS_PORT", raising=False)
    for name, port in (("test", 14222), ("demo", 14322)):
        try:
            topo = load_topology(root / f"{name}.yaml", env=dict(os.environ))
        except TopologyError as err:
            assert problems(err) == {(err.line, "handlers.query_length.file")}, str(err)
            continue
        assert topo.name == name and topo.nats.port == port
        assert len(topo.heavy()) == 3
