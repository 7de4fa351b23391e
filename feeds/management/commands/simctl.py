"""Script faults and market state on a running simulator, over its /_sim/ control API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from feeds.providers.simulation.faults import DataFault

ACTIONS = {
    "status": ("GET", "/_sim/status"),
    "connections": ("GET", "/_sim/connections"),
    "labels": ("GET", "/_sim/labels"),
    "token": ("POST", "/_sim/token"),
    "close-clean": ("POST", "/_sim/connections/close_clean"),
    "close-unclean": ("POST", "/_sim/connections/close_unclean"),
    "stall": ("POST", "/_sim/connections/stall"),
    "mute": ("POST", "/_sim/connections/mute"),
    "reject-auth": ("POST", "/_sim/auth"),
    "accept-auth": ("POST", "/_sim/auth"),
    "expire-tokens": ("POST", "/_sim/tokens/expire"),
    "fault": ("POST", "/_sim/faults"),
    "clear-faults": ("DELETE", "/_sim/faults"),
    "market-open": ("POST", "/_sim/market"),
    "market-close": ("POST", "/_sim/market"),
    "caps": ("POST", "/_sim/caps"),
}


class Command(BaseCommand):
    help = (
        "Control a running simulator: close or stall connections, reject auth, expire "
        "tokens, lower caps, inject labelled data faults, open or close the market. "
        "Example: simctl fyers fault --kind spike --rate 0.01 --keys NSE:SBIN"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", choices=["fyers", "upstox"])
        parser.add_argument("action", choices=sorted(ACTIONS))
        parser.add_argument("--url", help="Simulator REST base (default: the provider setting).")
        parser.add_argument("--connection", default="all", help="Connection id, or 'all'.")
        parser.add_argument("--seconds", type=float, help="Stall length, or fault duration.")
        parser.add_argument("--code", type=int, help="Close code for close-clean.")
        parser.add_argument("--kind", choices=[k.value for k in DataFault])
        parser.add_argument("--keys", nargs="*", help="Canonical instrument keys.")
        parser.add_argument("--rate", type=float, help="Share of ticks to corrupt (0-1).")
        parser.add_argument("--count", type=int, help="Corrupt the next N ticks.")
        parser.add_argument("--magnitude", type=float)
        parser.add_argument("--topics", type=int, help="FYERS topic cap for 'caps'.")
        parser.add_argument("--connections", type=int, help="Upstox connection cap for 'caps'.")

    def handle(self, *args: Any, **options: Any) -> None:
        provider, action = options["provider"], options["action"]
        base = options["url"] or getattr(settings, provider.upper())["API_URL"]
        method, path = ACTIONS[action]
        body = self._body(action, options)
        request = urllib.request.Request(
            base.rstrip("/") + path,
            method=method,
            data=json.dumps(body).encode() if method != "GET" else None,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.stdout.write(json.dumps(json.load(response), indent=2))
        except urllib.error.HTTPError as exc:
            raise CommandError(f"{exc.code}: {exc.read().decode(errors='replace')}") from exc
        except urllib.error.URLError as exc:
            raise CommandError(f"no simulator at {base}: {exc.reason}") from exc

    @staticmethod
    def _body(action: str, o: dict[str, Any]) -> dict[str, Any]:
        if action in ("close-clean", "close-unclean", "stall", "mute"):
            body: dict[str, Any] = {"connection": o["connection"]}
            if o["seconds"] is not None:
                body["seconds"] = o["seconds"]
            if o["code"] is not None:
                body["code"] = o["code"]
            return body
        if action in ("reject-auth", "accept-auth"):
            return {"reject": action == "reject-auth"}
        if action in ("market-open", "market-close"):
            return {"open": action == "market-open"}
        if action == "fault":
            if not o["kind"]:
                raise CommandError("fault needs --kind")
            fields = {"kind": o["kind"], "provider": o["provider"], "keys": o["keys"],
                      "rate": o["rate"], "count": o["count"], "magnitude": o["magnitude"],
                      "seconds": o["seconds"]}  # fmt: skip
            return {k: v for k, v in fields.items() if v is not None}
        if action == "caps":
            return {k: v for k, v in (("topics", o["topics"]), ("connections", o["connections"]))
                    if v is not None}  # fmt: skip
        return {}
