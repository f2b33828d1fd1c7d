"""The test suite: one folder per package of contextpilot, helpers in ``support``."""
