"""LlamaHub packaging conventions and the pinned public surface."""

from __future__ import annotations

from pathlib import Path

import llama_index.postprocessor.contextpilot as pkg
import tomllib
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from pydantic import SecretStr

EXPECTED_ALL = [
    "DEDUP_KEY",
    "DEFAULT_NOTE",
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotNodePostprocessor",
    "__version__",
    "node_key",
]


def test_all_is_pinned():
    assert sorted(pkg.__all__) == sorted(EXPECTED_ALL)
    assert all(hasattr(pkg, n) for n in EXPECTED_ALL)


def test_llamahub_metadata_names_what_exists():
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    hub = meta["tool"]["llamahub"]
    assert hub["import_path"] == pkg.__name__
    for cls in hub["class_authors"]:
        assert issubclass(getattr(pkg, cls), BaseNodePostprocessor)
    assert meta["project"]["version"] == pkg.__version__
    assert any(d.startswith("contextpilot>=0.6") for d in meta["project"]["dependencies"])


def test_class_name_and_secret_key():
    post = pkg.ContextPilotNodePostprocessor(server_url="http://127.0.0.1:9", api_key="sk-li")
    assert post.class_name() == "ContextPilotNodePostprocessor"
    assert isinstance(post.api_key, SecretStr) and "sk-li" not in repr(post)
