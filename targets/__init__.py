"""Execution backends behind one interface (see targets/base.py)."""
