"""Drop-in compatibility with the reference contextpilot 0.5.0, both ways (CI step 52)."""
