"""The seam fault-injection tests use to break a node at an exact point.

Some faults cannot be caused from outside a process at the right moment: a target
that dies between its two shares, or one whose second share is lost for good. A
test passes a `Faults` subclass to `Node` (see `tests/fault_node.py`), whose
methods are asked at those points. Production passes none: `Target` then never
calls into this module and sends its shares all at once.
"""

from __future__ import annotations

__all__ = ["Faults"]


class Faults:
    """Asked at the points a test may break; the default breaks nothing."""

    def after_share(self, comp_id: str, sent: int, total: int) -> bool:
        """A target has sent `sent` of the `total` shares of `comp_id`.

        Return True to go on sending, False to send no more of them (the round
        still counts as answered: those shares are lost). To crash, don't return.
        """
        return True
