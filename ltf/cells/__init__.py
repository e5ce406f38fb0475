"""Forgetting cells, one recurrent step each, over plain parameter pytrees (see `base.py` for the
protocol and `registry.py` for the names). Imports nothing: import the modules themselves."""
