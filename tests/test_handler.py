"""The handler framework without a daemon: decorator, loader, harness, dispatch files.

These are the checks a participant meets first (`hive handler test`), so they pin
down the error messages as much as the happy path.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from beehive.core.dispatch import (
    CompleteRecord,
    DispatchError,
    read_complete,
    read_pending,
    write_complete,
    write_pending,
)
from beehive.core.models import Computation
from beehive.nectar import (
    Handler,
    HandlerDefinitionError,
    HandlerLoadError,
    HandlerResultError,
    HandlerTimeoutError,
    handler,
    load_handler,
    run_sample,
    sample_computation,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _repo_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handler files import `beehive` / `nectar` from the repo, installed or not."""
    monkeypatch.syspath_prepend(str(REPO))


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


# -- decorator ---------------------------------------------------------------------


def test_sync_handler() -> None:
    @handler
    def count(comp: Computation) -> int:
        return len(comp.query)

    assert isinstance(count, Handler)
    assert count.name == "count" and not count.is_async
    assert count(sample_computation("abc")) == 3  # still callable as the plain function
    assert run_sample(count, query="abcd") == 4


def test_async_handler_and_name() -> None:
    @handler(name="renamed")
    async def count(comp: Computation) -> int:
        await asyncio.sleep(0)
        return 7

    assert count.name == "renamed" and count.is_async
    assert run_sample(count) == 7


def test_unannotated_and_future_annotations_accepted(tmp_path: Path) -> None:
    @handler
    def bare(comp):
        return 1

    assert run_sample(bare) == 1
    file = write(
        tmp_path / "future.py",
        """
        from __future__ import annotations
        from beehive import handler, Computation

        @handler
        def f(comp: Computation) -> int:
            return 2
        """,
    )
    assert run_sample(load_handler(file)) == 2


def test_rejects_non_callable() -> None:
    with pytest.raises(HandlerDefinitionError, match="must decorate a function"):
        handler(42)


def test_rejects_positional_name() -> None:
    with pytest.raises(HandlerDefinitionError, match=r"@handler\(name='x'\)"):
        handler("x")


@pytest.mark.parametrize(
    "source",
    [
        "def f() -> int: return 1",
        "def f(a, b) -> int: return 1",
        "def f(*args) -> int: return 1",
        "def f(*, comp) -> int: return 1",
    ],
)
def test_rejects_wrong_parameter_count(source: str) -> None:
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises(HandlerDefinitionError, match="exactly one positional parameter"):
        handler(namespace["f"])


@pytest.mark.parametrize(("annotation", "shown"), [("str", "str"), ("None", "None")])
def test_rejects_wrong_return_annotation(annotation: str, shown: str) -> None:
    namespace: dict = {}
    exec(f"def f(comp) -> {annotation}: return 1", namespace)
    with pytest.raises(HandlerDefinitionError, match=f"annotated to return {shown}; .* int"):
        handler(namespace["f"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "returned bool True"),
        ("3", "returned builtins.str '3'"),
        (1.0, "returned builtins.float"),
        (-1, "outside \\[0, 2\\^32\\)"),
        (2**32, "outside \\[0, 2\\^32\\)"),
    ],
)
def test_bad_results_are_errors(value: object, message: str) -> None:
    @handler
    def bad(comp):
        return value

    with pytest.raises(HandlerResultError, match=message):
        run_sample(bad)


def test_edges_of_the_range_are_fine() -> None:
    @handler
    def top(comp):
        return 2**32 - 1

    @handler
    def zero(comp):
        return 0

    assert run_sample(top) == 2**32 - 1
    assert run_sample(zero) == 0


def test_timeout_sync_and_async() -> None:
    import threading

    release = threading.Event()

    @handler
    def slow(comp) -> int:
        release.wait(10)
        return 1

    @handler
    async def slow_async(comp) -> int:
        await asyncio.sleep(10)
        return 1

    try:
        with pytest.raises(HandlerTimeoutError, match=r"did not answer within 0\.1s"):
            run_sample(slow, timeout=0.1)
        with pytest.raises(HandlerTimeoutError, match=r"did not answer within 0\.1s"):
            run_sample(slow_async, timeout=0.1)
    finally:
        release.set()


def test_handler_exception_propagates() -> None:
    @handler
    def boom(comp) -> int:
        raise RuntimeError("no data today")

    with pytest.raises(RuntimeError, match="no data today"):
        run_sample(boom)


# -- loader and harness ------------------------------------------------------------


def test_query_length_example() -> None:
    h = load_handler(REPO / "handlers" / "query_length.py")
    assert h.name == "query_length"
    assert run_sample(h) == len("What is your secret value")
    assert run_sample(h, query="x" * 7) == 7
    assert run_sample(h, query="x" * 1000) == 100


def test_answer_42_example() -> None:
    assert run_sample(REPO / "handlers" / "answer_42.py") == 42


def test_seed_style_handler(tmp_path: Path) -> None:
    file = write(
        tmp_path / "my_handler.py",
        """
        from nectar import handler, Computation

        @handler
        def analyze(comp: Computation) -> int:
            return len(comp.query) * 2
        """,
    )
    assert run_sample(file, query="What is your secret value") == 50


def test_no_handler(tmp_path: Path) -> None:
    file = write(tmp_path / "plain.py", "def f(comp):\n    return 1\n")
    with pytest.raises(HandlerLoadError, match=r"no handler found; decorate .* with @handler"):
        load_handler(file)


def test_two_handlers_are_named(tmp_path: Path) -> None:
    file = write(
        tmp_path / "two.py",
        """
        from beehive import handler

        @handler
        def first(comp) -> int:
            return 1

        @handler
        def second(comp) -> int:
            return 2
        """,
    )
    with pytest.raises(HandlerLoadError, match=rf"^{file}:9: 2 handlers found") as err:
        load_handler(file)  # named at the second one's def
    assert "first" in str(err.value) and "second" in str(err.value)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    file = write(tmp_path / "broken.py", "from beehive import handler\n\ndef f(comp:\n")
    with pytest.raises(HandlerLoadError, match=r"broken\.py:3: syntax error"):
        load_handler(file)


def test_import_error_names_file_and_line(tmp_path: Path) -> None:
    file = write(tmp_path / "imports.py", "x = 1\nimport no_such_module_here\n")
    with pytest.raises(HandlerLoadError, match=r"imports\.py:2: ModuleNotFoundError"):
        load_handler(file)


def test_bad_decoration_in_file_names_line(tmp_path: Path) -> None:
    file = write(
        tmp_path / "badsig.py",
        "from beehive import handler\n\n@handler\ndef f(a, b):\n    return 1\n",
    )
    # The line of the `def` (what to fix), not of the `@handler` above it.
    with pytest.raises(HandlerLoadError, match=r"badsig\.py:4: handler 'f' must take exactly one"):
        load_handler(file)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HandlerLoadError, match="no such handler file"):
        load_handler(tmp_path / "nope.py")


def test_sibling_import_and_unique_modules(tmp_path: Path) -> None:
    for name, value in (("a", 1), ("b", 2)):
        folder = tmp_path / name
        folder.mkdir()
        write(folder / f"helper_{name}.py", f"VALUE = {value}\n")
        write(
            folder / "handler.py",
            f"""
            from beehive import handler
            from helper_{name} import VALUE

            @handler
            def h(comp) -> int:
                return VALUE
            """,
        )
    # Same file name twice: each load is its own module, never the other's.
    assert run_sample(tmp_path / "a" / "handler.py") == 1
    assert run_sample(tmp_path / "b" / "handler.py") == 2
    assert str(tmp_path / "b") == sys.path[0]


def test_imported_handler_does_not_count_twice(tmp_path: Path) -> None:
    write(
        tmp_path / "shared_h.py",
        "from beehive import handler\n\n@handler\ndef shared(comp) -> int:\n    return 1\n",
    )
    file = write(
        tmp_path / "own.py",
        """
        from beehive import handler
        from shared_h import shared

        @handler
        def own(comp) -> int:
            return shared(comp) + 1
        """,
    )
    assert load_handler(file).name == "own"


# -- where a failure is: file:line, the handler's own frames ----------------------------


def test_no_handler_points_at_the_function_to_decorate(tmp_path: Path) -> None:
    file = write(
        tmp_path / "undecorated.py",
        "def helper(x, y):\n    return x\n\n\ndef answer(comp):\n    return 1\n",
    )
    with pytest.raises(HandlerLoadError) as err:
        load_handler(file)
    assert str(err.value).startswith(f"{file}:5: no handler found; decorate")
    assert "answer() here is not decorated" in str(err.value)


BROKEN_FILES = {
    "syntax": ("from beehive import handler\n\n@handler\ndef f(comp:\n    return 1\n", 4),
    "signature": ("from beehive import handler\n\n\n@handler\ndef f(a, b):\n    return 1\n", 5),
    "returns": (
        "from beehive import Computation, handler\n\n@handler(name='x')\n"
        "async def f(comp: Computation) -> str:\n    return '1'\n",
        4,
    ),
    "generator": ("import beehive\n\n@beehive.handler\ndef f(comp):\n    yield 1\n", 4),
    "none": ("import os\n\ndef f(comp):\n    return 1\n", 3),
    "two": (
        "from beehive import handler as h\n@h\ndef f(comp):\n    return 1\n\n"
        "def g(comp):\n    return 2\n\ng = h(g)\n",
        6,
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_the_static_check_reports_what_an_import_does(tmp_path: Path, case: str) -> None:
    """`hive validate` parses a handler whose environment is not built instead of
    importing it: for every mistake in the file itself, the very same message."""
    from beehive.nectar.check import static_check

    source, line = BROKEN_FILES[case]
    file = write(tmp_path / f"{case}.py", source)
    with pytest.raises(HandlerLoadError) as imported:
        load_handler(file)
    with pytest.raises(HandlerLoadError) as parsed:
        static_check(file)
    assert str(parsed.value) == str(imported.value)
    assert str(parsed.value).startswith(f"{file}:{line}: "), str(parsed.value)


def test_the_static_check_runs_nothing_and_needs_no_requirement(tmp_path: Path) -> None:
    from beehive.nectar.check import static_check

    marker = tmp_path / "ran"
    file = write(
        tmp_path / "needs_numpy.py",
        f"""
        import numpy_that_is_not_installed as np
        from beehive import Computation, handler
        open({str(marker)!r}, "w").close()
        LIMIT = np.int64(3)

        @handler(name="counted")
        def count(comp: Computation) -> int:
            return min(len(comp.query), LIMIT)
        """,
    )
    with pytest.raises(HandlerLoadError, match="ModuleNotFoundError"):
        load_handler(file)
    assert static_check(file) == ("counted", f"{file}:8")
    assert not marker.exists()


def test_a_sync_handlers_frames_survive_the_dropped_traceback(tmp_path: Path) -> None:
    """A sync handler's traceback is dropped in its thread (memory); its frames
    are kept as text, and only the handler's own files are shown."""
    from beehive.nectar.loader import failure_where, own_traceback

    write(tmp_path / "helper_div.py", "def divide(n):\n    return 10 // n\n")
    file = write(
        tmp_path / "divides.py",
        """
        from beehive import handler
        from helper_div import divide

        @handler
        def ratio(comp) -> int:
            return divide(len(comp.query) - 5)
        """,
    )
    with pytest.raises(ZeroDivisionError) as err:
        run_sample(file, query="hello")
    assert failure_where(err.value, file) == f"{tmp_path / 'helper_div.py'}:2"
    trace = own_traceback(err.value, file)
    assert f'File "{file}", line 7, in ratio' in trace
    assert f'File "{tmp_path / "helper_div.py"}", line 2, in divide' in trace
    assert trace.endswith("ZeroDivisionError: integer division or modulo by zero")
    assert "beehive" not in trace.replace(str(tmp_path), "") and "asyncio" not in trace


def test_an_async_handlers_chain_without_chained_messages(tmp_path: Path) -> None:
    from beehive.nectar.loader import own_traceback

    file = write(
        tmp_path / "lookup.py",
        """
        from beehive import handler

        TABLE = {}

        @handler
        async def look_up(comp) -> int:
            try:
                return TABLE[comp.query]
            except KeyError:
                raise ValueError("not in the table")
        """,
    )
    with pytest.raises(ValueError) as err:
        run_sample(file, query="private words")
    full = own_traceback(err.value, file)
    assert "KeyError: 'private words'" in full and "During handling" in full
    logged = own_traceback(err.value, file, chained_messages=False)
    assert "private words" not in logged
    assert "KeyError (its message is left out of the log)" in logged
    assert logged.endswith("ValueError: not in the table")
    assert f'File "{file}", line 9, in look_up' in logged


def test_the_check_process_reads_its_result_whatever_the_file_prints(tmp_path: Path) -> None:
    from beehive.nectar.check import check_file

    file = write(
        tmp_path / "chatty.py",
        """
        import sys
        from beehive import handler
        print('{"ok": false, "error": "forged"}')
        sys.stdout.flush()

        @handler
        def chatty(comp) -> int:
            return 1
        """,
    )
    outcome = check_file(sys.executable, file)
    assert (outcome.ok, outcome.name, outcome.where) == (True, "chatty", f"{file}:8")


def test_a_hanging_import_is_stopped_at_its_line(tmp_path: Path) -> None:
    from beehive.nectar.check import check_file

    file = write(tmp_path / "hangs.py", "import time\n\ntime.sleep(60)\n")
    outcome = check_file(sys.executable, file, timeout=1)
    assert not outcome.ok
    assert outcome.message.startswith(f"{file}:3: importing it took longer than 1s")


# -- dispatch file helpers (beehive.core.dispatch) -----------------------------------


def test_pending_round_trip(tmp_path: Path) -> None:
    comp = sample_computation("q")
    path = write_pending(tmp_path, comp)
    assert path.name == f"{comp.comp_id}.pending"
    assert read_pending(path) == comp
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no tmp left behind


def test_complete_round_trip_and_invariants(tmp_path: Path) -> None:
    rec = CompleteRecord.ok("c1", 5, "h", 1.5)
    assert read_complete(write_complete(tmp_path, rec)) == rec
    err = CompleteRecord.failed("c2", "boom", "h")
    assert read_complete(write_complete(tmp_path, err)).error == "boom"
    with pytest.raises(ValueError, match="outside"):
        CompleteRecord.ok("c3", 2**32)
    with pytest.raises(ValueError, match="needs an error message"):
        CompleteRecord(comp_id="c4", status="error")
    (tmp_path / "c5.complete").write_text('{"comp_id": "c5", "status": "ok", "result": true}')
    with pytest.raises(DispatchError, match=r"c5\.complete is not a valid completion"):
        read_complete(tmp_path / "c5.complete")


def test_garbage_pending_is_a_dispatch_error(tmp_path: Path) -> None:
    (tmp_path / "x.pending").write_text("not json")
    with pytest.raises(DispatchError, match=r"x\.pending is not a valid Computation"):
        read_pending(tmp_path / "x.pending")


@pytest.mark.parametrize("comp_id", ["../escape", ".hidden", "", "a/b"])
def test_unsafe_comp_ids_refused(tmp_path: Path, comp_id: str) -> None:
    fields = {"comp_id": comp_id, "query": "q", "proposer": "p", "aggregators": ["a"]}
    with pytest.raises(ValueError, match="comp_id"):  # refused where a spec is parsed
        Computation(**fields, targets=["t"])
    # and by the dispatch paths, should an unchecked one ever get that far
    comp = Computation.model_construct(**fields, targets=["t"])
    with pytest.raises(DispatchError, match="cannot be used as a dispatch file name"):
        write_pending(tmp_path, comp)
