"""The Python examples (examples/python) run as documented, on two CPU ranks."""
import importlib.util
import json
import re

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples" / "python"
CONFIGS = ROOT / "examples" / "configs"
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="transformers is not installed")


def final_losses(out):
    m = re.search(r"loss (\d+\.\d+) -> (\d+\.\d+)", out)
    assert m, out[-4000:]
    return float(m.group(1)), float(m.group(2))


def test_basic_example_trains(launch):
    rc, out = launch(EXAMPLES / "train.py", 2, "--deepspeed_config", CONFIGS / "train_cpu.json", "--steps", "20")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.7 * first


@needs_transformers
@pytest.mark.parametrize("extra", [[], ["--trainer"]])
def test_hugging_face_example_trains(launch, extra):
    config = EXAMPLES / "hf_auto.json" if extra else CONFIGS / "train_cpu.json"
    rc, out = launch(EXAMPLES / "train_hf.py", 2, "--deepspeed_config", config, "--steps", "20", *extra)
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.85 * first


@pytest.mark.parametrize("config", ["zero2_offload_config.json", "zero3_offload_config.json"])
def test_offload_example_trains_with_the_optimizer_on_the_cpu(launch, config):
    rc, out = launch(EXAMPLES / "train_offload.py", 2, "--deepspeed_config", CONFIGS / config, "--steps", "20")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.85 * first


def test_offload_example_trains_with_the_optimizer_on_nvme(launch, tmp_path):
    # examples/configs/zero3_nvme_offload_config.json with its nvme_path pointed at a temporary directory
    cfg = json.loads((CONFIGS / "zero3_nvme_offload_config.json").read_text())
    cfg["zero_optimization"]["offload_optimizer"]["nvme_path"] = str(tmp_path)
    (tmp_path / "nvme.json").write_text(json.dumps(cfg))
    rc, out = launch(EXAMPLES / "train_offload.py", 2, "--deepspeed_config", tmp_path / "nvme.json", "--steps", "20")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < 0.85 * first
    assert [p.name for p in tmp_path.iterdir()] == ["nvme.json"], "swap files are unlinked when made"


def test_offload_example_trains_zero_infinity_on_the_cpu(launch):
    # examples/configs/zero_offload_config.json: stage 3, fp16, the optimizer and the parameters offloaded to the CPU
    # (the ZeRO-3 config of Hugging Face's DeepSpeed docs), gradient accumulation 16 on 2 ranks.
    rc, out = launch(EXAMPLES / "train_offload.py", 2, "--deepspeed_config", CONFIGS / "zero_offload_config.json",
                     "--steps", "6")
    assert rc == 0, out[-4000:]
    first, last = final_losses(out)
    assert last < first