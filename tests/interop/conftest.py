"""Session fixtures: the test models (made once), and prismaquant exports/dequantizations
made once per (model, format) and shared by every test that needs them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

import make_models
import pqtest

from pqtest import MODELS
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def work_dir() -> Path:
    root = os.environ.get("PQ_WORK")
    if root:
        return Path(root)
    return Path(tempfile.mkdtemp(prefix="pq-interop-"))


@pytest.fixture(scope="session")
def model_dirs(work_dir) -> dict[str, Path]:
    made = make_models.make_all(work_dir / "models")
    made["stories260K"] = pqtest.stories_dir()
    assert (made["stories260K"] / "config.json").exists(), made["stories260K"]
    return made


@pytest.fixture(scope="session")
def sources(model_dirs):
    cache = {}

    def get(model: str) -> pqtest.Checkpoint:
        if model not in cache:
            cache[model] = pqtest.load_checkpoint(model_dirs[model])
        return cache[model]
    return get


class Exports:
    """export + dequantize once per (model, format); failures are remembered and
    re-raised for every test that needs the same export."""

    def __init__(self, work: Path, models: dict[str, Path]):
        self.work, self.models, self.done = work, models, {}

    def get(self, model: str, fmt: str):
        key = (model, fmt)
        if key not in self.done:
            out = self.work / "exports" / f"{model}-{fmt}"
            deq = self.work / "exports" / f"{model}-{fmt}-dequantized"
            try:
                pqtest.run_pq("export", self.models[model], "--uniform", fmt, "-o", out)
                pqtest.run_pq("dequantize", out, "-o", deq)
                self.done[key] = (out, deq, None)
            except AssertionError as e:
                self.done[key] = (out, deq, e)
        out, deq, err = self.done[key]
        if err is not None:
            raise err
        return out, deq


@pytest.fixture(scope="session")
def exports(work_dir, model_dirs):
    if pqtest.pq_bin() is None:
        pytest.skip("PQ_BIN not set (run through tests/interop/run.sh)")
    assert pqtest.pq_bin().exists(), f"PQ_BIN={pqtest.pq_bin()} does not exist"
    return Exports(work_dir, model_dirs)
