"""A healthy run says nothing alarming (issue 16, "quiet healthy runs").

`hive up` of topologies/test.yaml (real nats-server and supervisord), one round
answered with its exact total, `hive down`: afterwards no line of any log of the
state folder, supervisord's own included, may say ERR, CRIT, WARNING or
Traceback. Each of those once appeared on every such run:

- nats `[ERR] … TLS handshake error` (the readiness probe hung up after INFO:
  beehive/orchestrator/health.py `probe_nats`);
- supervisord `CRIT Supervisor is running as root` (as root) and `CRIT Server
  'unix_http_server' running without any HTTP authentication checking`
  (beehive/templates/supervisord.conf.j2, beehive/orchestrator/supervisor_auth.py);
- every node's `WARNING returning true from eof_received() has no effect when
  using ssl` at shutdown (beehive/security/nats_tls.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import running_hive

ALARMING = re.compile(r"ERR|CRIT|WARNING|Traceback")


def _log_files(state_dir: Path) -> list[Path]:
    """Every log of the state folder (rotated ones too), and supervisord's own
    wherever its compiled config puts it."""
    conf = (state_dir / "supervisord.conf").read_text()
    supervisord_log = Path(re.search(r"^logfile=(.+)$", conf, re.MULTILINE)[1].replace("%%", "%"))
    return sorted({*state_dir.rglob("*.log"), *state_dir.rglob("*.log.[0-9]*"), supervisord_log})


def test_a_healthy_up_round_and_down_leave_no_alarming_log_line(
    short_tmp: Path, hive_env: dict[str, str]
) -> None:
    state_dir = short_tmp / "state"
    with running_hive(state_dir, hive_env) as hive:
        proc = hive.run(
            "submit",
            "What is your secret value",
            "--proposer",
            "alice",
            "--aggregators",
            "alice,bob",
            "--targets",
            "charlie,dave,eve",
            "--deadline",
            "20",
            "--json",
        )
        result = json.loads(proc.stdout)
        assert (result["status"], result["result"]) == ("complete", 75), proc.stdout
    # running_hive's exit ran `hive down` and waited for every process to be gone.
    logs = _log_files(state_dir)
    names = {p.name for p in logs}
    assert {"nats.log", "supervisord.log", "node-alice.log"} <= names, names
    offending = [
        f"{path.relative_to(state_dir)}:{number}: {line}"
        for path in logs
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if ALARMING.search(line)
    ]
    assert not offending, "alarming lines in a healthy run's logs:\n" + "\n".join(offending)
