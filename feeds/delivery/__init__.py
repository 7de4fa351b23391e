"""Delivery to clients: per-client queues, fan-out and the WebSocket API (issue 6)."""
