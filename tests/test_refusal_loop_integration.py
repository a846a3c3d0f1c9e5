"""The demo's shape on the real embedded model, tiny: the refusal judge as the run's judge,
judge-check before iteration 0, the seed constitution, rejection sampling, the XSTest subset and
harmlessness evaluated before and after, SFT then DPO on the revisions, and a report whose
headline states the paired change."""
from __future__ import annotations

import json

import pytest

from test_loop_integration import run_cli

pytestmark = pytest.mark.slow

CONFIG = """name: refusal
output_dir: {out}
seed: 0
data:
  dir: {data}
  sources: [{{name: dangerousqa, limit: 24}}]
  heldout_fraction: 0.25
models:
  base: {{backend: hf, model: embedded, batch_size: 32}}
  oracle: {{backend: llamacpp, model: embedded, n_ctx: 2048}}
generation: {{max_new_tokens: 12, temperature: 0.0, top_p: 1.0}}
judge: {{mode: refusal, check: {{sets: [xstest-completions, hh-rlhf-pairs], limit: 40}}}}
propose: {{max_principles: 1, max_failures_shown: 2, max_new_tokens: 96, max_attempts: 1}}
constitution: {{start_from: seed, top_k: 2}}
revise: {{samples: 3, temperature: 1.0, placement: user, require_pass: false}}
train: {{epochs: 1, batch_size: 2, objective: sft+dpo}}
eval:
  benchmarks: [xstest, harmlessness]
  options: {{xstest: {{labels: [safe], per_type: 1}}}}
loop: {{iterations: 1, batch_size: 4, probe_size: 50, probe_in_context: false}}
"""


def test_a_refusal_judged_run_end_to_end(data_dir, tmp_path):
    config = tmp_path / "refusal.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "runs", data=data_dir))
    result = run_cli(config)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "refusal"

    check = json.loads((run_dir / "judge_check.json").read_text())
    assert check["judge"] == "refusal (model-free)" and check["overall"]["n"] == 120  # 3 files x 40
    assert 0.8 < check["overall"]["binary_agreement"] <= 1.0

    it = run_dir / "iter_000"
    verdicts = [json.loads(line) for line in (it / "03_verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == 4 and all(v["categories"][0] in {"full_compliance", "full_refusal", "partial_refusal"}
                                      for v in verdicts if v["status"] != "unscored")
    revisions = [json.loads(line) for line in (it / "05_revisions.jsonl").read_text().splitlines()]
    failures = sum(v["status"] == "violation" for v in verdicts)
    assert len(revisions) == failures
    for r in revisions:  # each failure sampled until a pass, at most 3 times, every try recorded
        assert 1 <= r["attempts"] <= 3 and len(r["rejected"]) == r["attempts"] - 1
        assert all(a["verdict"]["status"] != "ok" for a in r["rejected"])
        assert r["principle_ids"] and all(pid.startswith(("S", "P")) for pid in r["principle_ids"])
    constitution = json.loads((run_dir / "constitution.json").read_text())
    seeds = [p for p in constitution["principles"] if p["origin"] and p["origin"].startswith("seed.json#")]
    assert len(seeds) == 10
    # a seed principle's fix record counts every judged try of every revision it was used in
    seed_ids = {p["id"] for p in seeds}
    expected = sum(r["attempts"] * len(seed_ids & set(r["principle_ids"])) for r in revisions)
    assert sum(p["fix_attempts"] for p in seeds) == expected

    # SFT, then DPO on (accepted revision, flagged answer) pairs, from the SFT adapter
    pairs = [json.loads(line) for line in (it / "06_dpo_pairs.jsonl").read_text().splitlines()]
    answers = {json.loads(line)["prompt_id"]: json.loads(line)["text"]
               for line in (it / "02_responses.jsonl").read_text().splitlines()}
    assert pairs and all(p["rejected"] == answers[p["prompt_id"]] != p["chosen"] for p in pairs)
    train = json.loads((it / "07_train.json").read_text())
    assert train["trained"] and train["objective"] == "sft+dpo" and train["sft"]["steps"] >= 1
    assert train["dpo"]["pairs"] == len(pairs) and train["dpo"]["beta"] == 0.1
    assert "frozen copy" in train["dpo"]["reference"] and "rewards_margins_last" in train["dpo"]
    # the trained adapter only: no "ref" copy (DPO's frozen reference) saved beside it
    assert {p.name for p in (it / "adapter").iterdir()} == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert not list(it.glob(".adapter*"))  # the intermediate SFT adapter is gone
    assert json.loads((it / "summary.json").read_text())["training"]["dpo"]["pairs"] == len(pairs)
    assert check["check_sets"] == ["xstest-completions", "hh-rlhf-pairs"]
    assert check["checks"]["hh-rlhf-pairs"]["pairs"] == 40

    base_eval = json.loads((run_dir / "baseline" / "eval.json").read_text())["benchmarks"]
    assert base_eval["xstest"]["protocol"] == "xstest/refusal-3class@1" and len(base_eval["xstest"]["examples"]) == 10
    assert base_eval["harmlessness"]["protocol"] == "harmlessness/refusal-judge@1"
    # the greedy probe and the harmlessness benchmark are the same answers: one cached call
    probe = [json.loads(line)["text"] for line in (run_dir / "baseline" / "08_probe_responses.jsonl").read_text().splitlines()]
    assert [e["choices"][0] for e in base_eval["harmlessness"]["examples"]] == probe
    stages = json.loads((run_dir / "baseline" / "stages.json").read_text())
    assert stages["eval"]["calls_cached"] >= 1

    summary = (run_dir / "report.md").read_text()
    assert "## Headline" in summary and "paired 95% CI" in summary
    assert "XSTest safe prompts refused (over-refusal, the cost)" in summary
    assert "Judge: refusal (model-free); agreement with human labels:" in summary
    assert "then DPO" in summary  # the training column: SFT loss, then DPO loss and reward margin
