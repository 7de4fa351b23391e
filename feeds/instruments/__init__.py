"""Instrument masters: parsing the providers' symbol-master files and linking them.

Sans-I/O apart from reading the files themselves: no Django import here. The
``import_instruments`` management command feeds the results to ``feeds.services``.
"""
