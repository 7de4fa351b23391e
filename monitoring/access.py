"""Who may see the monitoring page and its WebSocket: active staff users.

The page shows the hub's insides (pools, workers, alerts, audits), which the admin shows to
staff only; ordinary users have the live market pages. The view and the consumer both ask
here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any


def monitor_access_allowed(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)
