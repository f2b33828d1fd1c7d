"""Cross-cutting real-model tests: the framework plugins on Gemma 3 270M (CI step 33)."""
