"""Helpers shared by the tests: clocks, ports, waiting, builders."""
