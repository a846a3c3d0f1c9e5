"""The model being aligned answers through llama.cpp with each iteration's adapter converted to
a GGUF LoRA, while transformers trains it: two iterations on the embedded model, killed with
SIGKILL in iteration 1 and resumed."""
from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from test_loop_integration import run_cli

pytestmark = pytest.mark.slow

CONFIG = """name: engine
output_dir: {out}
seed: 0
data:
  dir: {data}
  sources: [{{name: dangerousqa, limit: 16}}]
  heldout_fraction: 0.25
models:
  base: {{backend: hf, model: embedded, generate_with: {{backend: llamacpp, model: embedded, n_ctx: 2048}}}}
  oracle: {{backend: llamacpp, model: embedded, n_ctx: 2048}}
generation: {{max_new_tokens: 12, temperature: 0.0, top_p: 1.0}}
judge: {{mode: refusal}}
propose: {{max_principles: 1, max_failures_shown: 2, max_new_tokens: 64, max_attempts: 1}}
constitution: {{start_from: seed, top_k: 1}}
revise: {{samples: 1, temperature: 1.0, placement: user, require_pass: false}}
train: {{epochs: 1, batch_size: 2, learning_rate: 0.001}}
loop: {{iterations: 2, batch_size: 3, probe_size: 4, probe_in_context: false}}
"""


@pytest.mark.timeout(1200)
def test_two_iterations_generate_with_llamacpp_and_resume_after_kill(data_dir, tmp_path):
    config = tmp_path / "engine.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "runs", data=data_dir))
    # baseline probe: 4 calls under "probe respond"; iteration 0: 3 under "respond"; the 5th
    # "respond" call is iteration 1's second
    killed = run_cli(config, kill_at="respond.call:5")
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = tmp_path / "runs" / "engine"
    assert (run_dir / "iter_000" / "07_train.json").is_file() and not (run_dir / "iter_001" / "02_responses.jsonl").exists()
    resumed = run_cli(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    first = json.loads((run_dir / "iter_000" / "07_train.json").read_text())
    assert first["trained"], first
    manifest = json.loads((run_dir / "iter_001" / "manifest.json").read_text())
    assert manifest["adapter_in"] == "iter_000/adapter" and manifest["adapter_in_sha256"] == first["adapter_sha256"]
    gguf = run_dir / manifest["adapter_in_gguf"]
    assert gguf.name == f"adapter.{first['adapter_sha256'][:16]}.gguf" and gguf.parent == run_dir / "iter_000"
    assert manifest["adapter_in_gguf_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert "@llamacpp:" in manifest["model"] and manifest["model"].endswith(first["adapter_sha256"][:16])
    responses = [json.loads(line) for line in (run_dir / "iter_001" / "02_responses.jsonl").read_text().splitlines()]
    assert len(responses) == 3 and all(r["model"] == manifest["model"] for r in responses)
    with sqlite3.connect(run_dir / "calls.sqlite") as db:
        times = [t for (t,) in db.execute("SELECT times_made FROM calls")]
        backends = {b for (b,) in db.execute("SELECT DISTINCT backend FROM calls")}
    assert times and all(t == 1 for t in times), "a call made before the kill was made again"
    assert manifest["model"] in backends
