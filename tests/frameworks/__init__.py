import pytest

# The shared checks live in _support.py: its asserts explain themselves as a test's do.
pytest.register_assert_rewrite("tests.frameworks._support")
