"""Imported by the multiprocessing fork server as it starts (its preload list, set by
:func:`tenmon.core.lifeline.pool_context`): the fork server, and so every pool worker, dies with the
daemon whose PID ``TENMON_LIFELINE_PID`` holds (and ends at once if that daemon is already gone).
Nothing else imports it.
"""

from __future__ import annotations

import os

from tenmon.core.lifeline import ENV_PID, die_with_parent

_origin = os.environ.get(ENV_PID, "")
if _origin.isdigit():
    die_with_parent(int(_origin), depth=1)
