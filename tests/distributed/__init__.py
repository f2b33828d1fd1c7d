"""Tests of ``contextpilot.distributed``: sharded planning (Ray in CI step 50)."""
