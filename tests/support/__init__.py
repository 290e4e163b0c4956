"""Shared helpers for the test suite: interpreters, venvs, processes, sockets."""
