"""Upstox Market Data Feed V3: ``codec`` (client side) and ``server_codec`` (simulator side)."""
