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


# ---------------------------------------------------------------- hostile files

NODES = "nodes:\n  alice: {role: heavy}\n"
TAIL = "name: tiny\n" + NODES


def _bomb(levels: int = 7, width: int = 10) -> str:
    """A "billion laughs": each level a list of `width` aliases of the one before."""
    lines = ["a: &a [" + ",".join(['"x"'] * width) + "]"]
    for prev, name in zip("abcdefghij", "bcdefghij"[: levels - 1], strict=False):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n" + TAIL


def _merge_bomb() -> str:
    """The same through `<<` merge keys, anchors hidden in a key the builder skips."""
    lines = ["? [&m1 {" + ", ".join(f"k{i}: x" for i in range(10)) + "}"]
    lines += [f"  , &m{i} {{<<: [{','.join([f'*m{i - 1}'] * 10)}]}}" for i in range(2, 9)]
    return "\n".join([*lines, "  ]", ": 1", "z: {<<: *m8}"]) + "\n" + TAIL


def _alias_deep() -> str:
    """Each level nests the one before 8 deep: shallow text, 80 levels once expanded."""
    lines = ["a0: &a0 [[[[[[[[x]]]]]]]]"]
    lines += [f"a{i}: &a{i} [[[[[[[[*a{i - 1}]]]]]]]]" for i in range(1, 10)]
    return "\n".join(lines) + "\n" + TAIL


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        pytest.param(_bomb(), (5, "e"), "too many YAML aliases/nodes (limit 100,000)", id="bomb"),
        pytest.param(_bomb(9, 9), (6, "f"), "limit 100,000", id="bomb-9x9"),
        pytest.param(_merge_bomb(), (5, "?.4.<<"), "limit 100,000", id="merge-keys"),
        pytest.param(_alias_deep(), (4, "a3"), "more than 32 levels", id="deep-via-aliases"),
        pytest.param(f"x: {'[' * 5000}{']' * 5000}\n{TAIL}", (1, None), "32 levels", id="flow"),
        pytest.param(f"x:\n  {'- ' * 3000}x\n{TAIL}", (2, None), "32 levels", id="block"),
        pytest.param(f"x: &a [1, *a]\n{TAIL}", (1, "x.1"), "recursive YAML alias", id="cycle"),
    ],
)
def test_a_hostile_yaml_file_is_refused_fast_with_little_memory(hive, text, where, words):
    """Each of these cost minutes, gigabytes or a RecursionError before the limits.

    The time bound guards against a regression (the 7-level bomb took 34 s and
    265 MB), it is no benchmark: here it takes milliseconds.
    """
    import time
    import tracemalloc

    path = hive(text)
    started = time.perf_counter()
    err = load_error(path)
    assert time.perf_counter() - started < 2.0
    assert (err.line, err.field) == where, str(err)
    assert words in err.message and len(err.problems) == 1
    tracemalloc.start()
    try:
        load_error(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_aliases_within_the_limits_still_work(hive):
    path = hive(
        """\
        name: tiny
        handlers:
          h: &h {file: ../handlers/query_length.py, timeout: 5}
          h2: *h
        nodes:
          alice: &heavy {role: heavy, handler: h}
          bob: *heavy
          carol: {<<: *heavy, handler: h2}
        """
    )
    topo = load_topology(path, env={})
    assert topo.nodes["bob"] == topo.nodes["alice"] and topo.nodes["carol"].handler == "h2"
    assert topo.handlers["h2"].timeout == 5


def test_an_oversize_file_is_refused_before_parsing(hive):
    from beehive.topology.loader import MAX_FILE_BYTES

    path = hive("name: [\n" + "#" * MAX_FILE_BYTES + "\n")  # broken YAML too: never parsed
    err = load_error(path)
    size = path.stat().st_size
    assert (err.line, err.field) == (None, None)
    assert err.message == (
        f"file is {size:,} bytes; a topology may be at most {MAX_FILE_BYTES:,} bytes (256 KiB)"
    )
    hive("# padding\n" * ((MAX_FILE_BYTES - len(MINIMAL)) // 10) + MINIMAL, name="edge.yaml")
    assert load_topology(path.with_name("edge.yaml"), env={}).name == "tiny"


@pytest.mark.parametrize(
    ("value", "words"), [("2024-13-40", "month must be in 1..12"), ("1" * 5000, "4300 digits")]
)
def test_a_scalar_python_cannot_convert_is_located_not_a_crash(hive, value, words):
    err = load_error(hive(f"name: tiny\nnats:\n  port: {value}\n{NODES}"))
    assert (err.line, err.field) == (3, "nats.port")
    assert words in err.message and err.hint == "quote it to keep it a string"


# ---------------------------------------------------------------- values that reach a config

HOSTED = """\
name: tiny
nats:
  host: ${HOST}
nodes:
  alice: {role: heavy}
"""


def test_a_newline_in_an_interpolated_host_is_refused_at_its_line(hive):
    """The F11 injection: `${HOST}` carrying a directive for nats-server.conf."""
    err = load_error(hive(HOSTED), env={"HOST": "127.0.0.1\nhttp: 8222"})
    assert problems(err) == {(3, "nats.host")}
    assert "'127.0.0.1\\nhttp: 8222' is not a host name or an IP address" in err.message
    assert "\n" not in str(err)  # the value is shown escaped, on one line


@pytest.mark.parametrize(
    "host",
    [
        "broker example",
        'broker"',
        "broker'",
        "broker;",
        "broker:4222",
        "[::1]",
        "fe80::1%eth0",
        "127.0.0.256",
        "-broker",
        "broker-",
        "a..b",
        "broker.",
        "under_score",
        "x" * 64,
        ".".join(["x" * 63] * 4),  # 255 characters
        "",
    ],
)
def test_a_host_that_is_neither_a_name_nor_an_address_is_refused(hive, host):
    err = load_error(hive(HOSTED), env={"HOST": host})
    assert problems(err) == {(3, "nats.host")}, str(err)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "broker.example",
        "nats-1.eu-west.internal.example.com",
        "x" * 63 + ".example",
        "10.0.0.1",
        "0.0.0.0",
        "::1",
        "2001:db8::8a2e:370:7334",
        "::ffff:192.0.2.1",
    ],
)
def test_host_names_and_ip_addresses_are_accepted(hive, host):
    assert load_topology(hive(HOSTED), env={"HOST": host}).nats.host == host


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://broker:4222", "is not a NATS URL"),
        ("broker:4222", "is not a NATS URL"),
        ("nats://:4222", "is not a NATS URL"),
        ("nats://broker:99999", "Port out of range"),
        ("nats://broker:4222\nlisten: 0.0.0.0:1", "whitespace or a control character"),
        ("nats://bro ker:4222", "whitespace or a control character"),
        ("tls://broker:4222\x1b[2J", "whitespace or a control character"),
    ],
)
def test_a_bad_nats_url_is_refused(hive, url, words):
    err = load_error(hive(f"name: tiny\nnats:\n  url: ${{URL}}\n{NODES}"), {"URL": url})
    assert problems(err) == {(3, "nats.url")}
    assert words in err.message


def test_nats_and_tls_urls_are_accepted(hive):
    for url in ("nats://broker.example:4222", "tls://10.0.0.1:4443", "nats://[::1]:4222"):
        path = hive(f"name: tiny\nnats:\n  url: ${{URL}}\n{NODES}")
        assert load_topology(path, env={"URL": url}).nats.url == url


def test_control_characters_in_handler_paths_and_requirements_are_refused(hive):
    path = hive(
        """\
        name: tiny
        handlers:
          a: {file: "../handlers/query_length.py\\n[program:x]"}
          b: {file: ../handlers/query_length.py, requirements: ["humanize\\u0000"]}
          c: {file: ../handlers/query_length.py, requirements: "reqs.txt\\r"}
        nodes:
          alice: {role: heavy}
        """
    )
    err = load_error(path)
    # Once each, by the schema (the loader does not also look for such a file).
    assert problems(err) == {
        (3, "handlers.a.file"),
        (4, "handlers.b.requirements"),
        (5, "handlers.c.requirements"),
    }, str(err)
    assert "contains a control character" in err.message


# ---------------------------------------------------------------- privacy floors


def test_a_node_may_raise_its_own_privacy_floor_never_lower_it(hive):
    stricter = hive(
        """\
        version: 1
        name: t
        defaults: {min_contributors: 3, sharing: shamir, threshold: 2}
        nodes:
          alice: {role: heavy}
          bob: {role: heavy}
          eve:
            role: light
            privacy: {min_contributors: 5}
        """
    )
    topo = load_topology(stricter, env={})
    assert topo.privacy_floor("eve").min_contributors == 5
    assert topo.privacy_floor("alice").min_contributors == 3
    assert topo.privacy_floor("alice").min_threshold == 2

    looser = hive(stricter.read_text().replace("5}", "2}"), name="looser.yaml")
    err = load_error(looser)
    assert problems(err) == {(9, "nodes.eve.privacy.min_contributors")}
    assert "can only be stricter" in str(err)
