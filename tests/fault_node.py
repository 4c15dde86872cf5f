"""A node process for fault-injection tests only: `beehive.flower.node` with faults.

    python tests/fault_node.py --config <state>/nodes/<alias>.json

Runs the real node (`beehive.flower.node.main`) with `HookFaults`, which reads
the one-shot file `<data_dir>/test-hook` a test writes:

    crash-after-first-share   the target exits abruptly (status 70) right after
                              the first share of the next round it answers
    drop-after-first-share    it sends only the first share and counts the round
                              done (a share lost for good)

The file is removed when it fires, so it fires once. Production nodes never load
this: they run `python -m beehive.flower.node`, which passes no faults.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from beehive.core.configs import NodeConfig
from beehive.flower import node
from beehive.flower.faults import Faults

HOOK_FILE = "test-hook"
CRASH = "crash-after-first-share"
DROP = "drop-after-first-share"

log = logging.getLogger("beehive.node")


class HookFaults(Faults):
    """Faults driven by `<data_dir>/test-hook` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.hook = Path(data_dir) / HOOK_FILE

    def after_share(self, comp_id: str, sent: int, total: int) -> bool:
        try:
            action = self.hook.read_text().strip()
        except OSError:
            return True  # no hook (left): go on
        self.hook.unlink(missing_ok=True)
        log.warning("test hook %r fires on %s after share %d/%d", action, comp_id, sent, total)
        if action == CRASH:
            os._exit(70)
        return action != DROP


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", type=Path, required=True)
    args, _ = parser.parse_known_args()
    # node.main parses the same command line again, and loads the config itself.
    node.main(faults=HookFaults(NodeConfig.load(args.config).data_dir))


if __name__ == "__main__":
    main()
