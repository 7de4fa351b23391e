"""FYERS API v3: the "HSM" binary market-data socket (FYERS.md).

- ``symbols``: fytoken segments and socket topic names, as the official SDK builds them;
- ``codec``: client side, sans-I/O: request builders and the stateful frame decoder;
- ``server_codec``: the inverse, for the simulator.
"""
