"""Every benchmark on the real embedded model with a small limit, through the real CLI, and the
loop's evaluation of the base model and of the model after each iteration."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from iteralign.evaluate.runner import BENCHMARKS

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_on_the_embedded_model(tmp_path, data_dir):
    names = [b for b in BENCHMARKS if b != "harmlessness"]  # harmlessness needs a run's held-out prompts
    out, cache = tmp_path / "eval.json", tmp_path / "calls.sqlite"
    command = [sys.executable, "-m", "iteralign.cli", "eval", "embedded", "--benchmarks", ",".join(names), "--limit", "2",
               "--max-new-tokens", "24", "--data-dir", str(data_dir), "--cache", str(cache)]
    result = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True, timeout=900,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served from the cache" in result.stdout and " 0 made" not in result.stdout
    document = json.loads(out.read_text())
    assert sorted(document["benchmarks"]) == sorted(names)
    for name, bench in document["benchmarks"].items():
        assert bench["protocol"] and "@" in bench["protocol"], name
        assert bench["examples"], name
        for metric in bench["metrics"].values():
            assert metric["n"] >= 0 and metric["ci_low"] <= metric["value"] <= metric["ci_high"], (name, metric)
    hhh = document["benchmarks"]["hhh"]
    assert {"acc", "acc_harmless", "acc_helpful", "acc_honest", "acc_other"} <= set(hhh["metrics"])
    assert hhh["metrics"]["acc"]["n"] == 8  # the limit is per category

    # the same evaluation again: every score and answer comes from the cache, nothing changes
    again = subprocess.run(command + ["--out", str(tmp_path / "again.json")], capture_output=True, text=True,
                           timeout=900, env=os.environ.copy())
    assert again.returncode == 0, again.stderr[-3000:]
    assert "model calls: 0 made," in again.stdout
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["benchmarks"] == document["benchmarks"]


def test_loop_evaluates_base_and_trained_model(tmp_path, data_dir):
    config = tmp_path / "c.yaml"
    config.write_text(f"""name: ev
output_dir: {tmp_path / "runs"}
data: {{dir: {data_dir}, sources: [{{name: dangerousqa}}]}}
models:
  base: {{backend: hf, model: embedded, batch_size: 4}}
  oracle: {{backend: llamacpp, model: embedded, n_ctx: 2048}}
generation: {{max_new_tokens: 16}}
judge: {{max_attempts: 1, max_new_tokens: 64}}
propose: {{max_new_tokens: 128, max_attempts: 1}}
revise: {{require_pass: false}}
train: {{epochs: 1, batch_size: 2}}
eval: {{benchmarks: [hhh_mc, harmlessness], limit: 2}}
loop: {{iterations: 1, batch_size: 2, probe_size: 2}}
""")
    result = subprocess.run([sys.executable, "-m", "iteralign.cli", "run", str(config)], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "ev"
    before = json.loads((run / "baseline" / "eval.json").read_text())["benchmarks"]
    after = json.loads((run / "iter_000" / "eval.json").read_text())["benchmarks"]
    assert before["hhh_mc"]["model"] != after["hhh_mc"]["model"] or not json.loads(
        (run / "iter_000" / "07_train.json").read_text())["trained"]
    assert before["harmlessness"]["metrics"]["violation_rate"]["n"] + \
        before["harmlessness"]["metrics"]["unscored"]["value"] == 2
