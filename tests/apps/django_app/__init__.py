"""A minimal Django project for tests/integration/test_frameworks.py (no database)."""
