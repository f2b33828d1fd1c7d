"""Tests of ``contextpilot.llamacpp``: the llama.cpp slot-tracking proxy (stand-in and real llama-server)."""
