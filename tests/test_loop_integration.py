"""The loop end to end on the real embedded model (tiny sizes): one real iteration, kill -9 and
resume inside respond, judge and training, and an oracle behind a faulty HTTP server.

Each run is `iteralign run` in a subprocess, like a user's; a kill is a real SIGKILL sent by the
process to itself at a named point (ITERALIGN_KILL_AT, see iteralign/failpoints.py).
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = """name: {name}
output_dir: {out}
seed: 0
data:
  dir: {data}
  sources: [{{name: dangerousqa}}]
  heldout_fraction: 0.2
models:
  base: {{backend: hf, model: embedded, batch_size: 1}}
  oracle: {oracle}
generation: {{max_new_tokens: 24}}
judge: {{max_attempts: 2, max_new_tokens: 64}}
propose: {{max_principles: 2, max_failures_shown: 3, max_new_tokens: 160, max_attempts: 2}}
revise: {{require_pass: false}}
train: {{epochs: 1, batch_size: 2}}
loop: {{iterations: 1, batch_size: 3, probe_size: 2}}
"""
LLAMACPP_ORACLE = "{backend: llamacpp, model: embedded, n_ctx: 2048}"


def write_config(tmp: Path, data_dir: Path, name: str, oracle: str = LLAMACPP_ORACLE) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(TINY.format(name=name, out=tmp / "runs", data=data_dir, oracle=oracle))
    return path


def run_cli(config: Path, kill_at: str | None = None, env: dict | None = None, args=()) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop("ITERALIGN_KILL_AT", None)
    if kill_at:
        environment["ITERALIGN_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "iteralign.cli", "run", str(config), *args], capture_output=True,
                          text=True, timeout=900, env=environment)


def artifacts(run_dir: Path) -> dict[str, bytes]:
    """Every artifact that must not depend on interruptions (timings and call counts excluded)."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if not path.is_file() or rel.startswith("calls.sqlite") or rel == "manifest.json" or path.name == "stages.json":
            continue
        if rel in ("report.html", "report.md", "run.lock"):  # times and stage seconds; the last holder's PID
            continue
        data = path.read_bytes()
        if rel == "config.yaml":  # the runs live in different folders; all else must match
            data = b"\n".join(line for line in data.splitlines() if not line.startswith(b"output_dir:"))
        if path.name == "summary.json":
            summary = json.loads(data)
            summary.pop("stages", None)
            data = json.dumps(summary, sort_keys=True).encode()
        out[rel] = data
    return out


def call_rows(run_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(run_dir / "calls.sqlite") as db:
        return sorted(db.execute("SELECT key, times_made FROM calls").fetchall())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, request):
    data_dir = request.getfixturevalue("data_dir")
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp, data_dir, "ref")
    result = run_cli(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "runs" / "ref"


@pytest.fixture(scope="module")
def data_dir():
    from conftest import shared_data_dir

    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared datasets not found at {path}")
    return path


def test_one_real_iteration_writes_every_artifact(reference):
    it = reference / "iter_000"
    for name in ("01_prompts.jsonl", "02_responses.jsonl", "03_verdicts.jsonl", "04_principles.json",
                 "05_revisions.jsonl", "06_sft.jsonl", "07_train.json", "08_probe_responses.jsonl",
                 "09_probe_verdicts.jsonl", "summary.json", "manifest.json"):
        assert (it / name).is_file(), name
    summary = json.loads((it / "summary.json").read_text())
    assert summary["prompts"] == 3 and summary["answers"]["n"] == 3
    assert summary["probe"]["n"] == 2
    assert set(summary["stages"]) >= {"respond", "judge", "propose", "revise", "train", "probe_respond"}
    # the precondition of the kill-in-training test: this tiny run does train an adapter
    train = json.loads((it / "07_train.json").read_text())
    assert train["trained"], "the tiny run found no failure to train on; the kill tests below need one"
    assert (it / "adapter" / "adapter_model.safetensors").is_file()
    assert summary["adapter_out"].endswith("adapter")
    assert (reference / "constitution.md").read_text().startswith("# Constitution")
    # the library: what propose left, plus each principle's fix record from the judged revisions
    constitution = json.loads((reference / "constitution.json").read_text())
    proposal = json.loads((it / "04_principles.json").read_text())
    assert [p["id"] for p in constitution["principles"]] == [p["id"] for p in proposal["library"]]
    revisions = [json.loads(line) for line in (it / "05_revisions.jsonl").read_text().splitlines()]
    attempts = sum(p["fix_attempts"] for p in constitution["principles"])
    assert attempts == sum(1 for r in revisions for pid in r["principle_ids"] if r["verdict"]
                           and r["verdict"]["status"] != "unscored"
                           and r["prompt_id"] in next(p for p in constitution["principles"] if p["id"] == pid)["evidence"])
    effects = summary["effects"]
    assert effects["n"] == 2 and effects["in_weights"] == summary["probe"]["violation_rate"]
    if constitution["counts"]["active"]:  # principles existed: the probe was also asked with them in context
        assert (it / "11_probe_in_context_verdicts.jsonl").is_file() and "probe_in_context_judge" in summary["stages"]
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["stop_reason"] and manifest["models"]["oracle"].startswith("llamacpp:")
    assert all(times == 1 for _, times in call_rows(reference))


def test_kill_and_resume_gives_identical_artifacts_without_repeating_calls(reference, data_dir, tmp_path):
    """One run killed three times, inside respond, judge and training, each resume going one stage further.

    One chain instead of three separate kill-then-resume runs: the same three kill points and the
    same final checks, for a third of the model work (this is the suite's slowest test).
    """
    config = write_config(tmp_path, data_dir, "ref")  # same name and config as the reference
    run_dir = tmp_path / "runs" / "ref"
    for kill_at in ("respond.call:2", "judge.call:2", "train.step:1"):
        calls_before = len(call_rows(run_dir)) if (run_dir / "calls.sqlite").exists() else 0
        killed = run_cli(config, kill_at=kill_at)
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-2000:])
        assert not (run_dir / "iter_000" / "summary.json").exists()
        assert all(times == 1 for _, times in call_rows(run_dir)), f"killed at {kill_at}: a call was made twice"
        stages = json.loads((run_dir / "iter_000" / "stages.json").read_text()) \
            if (run_dir / "iter_000" / "stages.json").exists() else {}
        if kill_at != "respond.call:2":  # the stage killed one run earlier was finished from the cache
            finished = {"judge.call:2": "respond", "train.step:1": "judge"}[kill_at]
            assert stages[finished]["calls_cached"] >= 2 and calls_before >= 2, (finished, stages.get(finished))

    resumed = run_cli(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert artifacts(run_dir) == artifacts(reference)
    rows = call_rows(run_dir)
    assert rows == call_rows(reference), "the resumed run made a different set of calls"
    assert all(times == 1 for _, times in rows), "a call that had completed was made again"


def test_oracle_behind_a_faulty_server_completes_and_reports_unscored(data_dir, tmp_path):
    from iteralign.backends.embedded import embedded_gguf
    from iteralign.testing.openai_stub import StubServer, llama_server

    secret = "sk-iteralign-test-0123456789"
    with llama_server(embedded_gguf()) as upstream, \
            StubServer(upstream=upstream, fault_rate=0.45, faults=("500", "timeout", "malformed"), hang_s=4.0,
                       seed=1) as stub:
        oracle = ("{backend: openai, model: smollm2, base_url: '" + stub.base_url + "', api_key_env: "
                  "ITERALIGN_TEST_ORACLE_KEY, timeout_s: 2, max_retries: 1, max_concurrency: 2, "
                  "structured_output: json_object}")
        config = write_config(tmp_path, data_dir, "faults", oracle=oracle)
        result = run_cli(config, env={"ITERALIGN_TEST_ORACLE_KEY": secret}, args=["--accept-unscored"])
        stats = dict(stub.stats)
        seen_keys = {h.get("authorization") for h in stub.headers}
    assert result.returncode == 0, result.stderr[-3000:]
    assert stats["500"] > 0 and stats["timeout"] > 0 and stats["malformed"] > 0, stats
    assert f"Bearer {secret}" in seen_keys

    run_dir = tmp_path / "runs" / "faults"
    verdict_files = [run_dir / "baseline" / "09_probe_verdicts.jsonl", run_dir / "iter_000" / "03_verdicts.jsonl",
                     run_dir / "iter_000" / "09_probe_verdicts.jsonl"]
    verdicts = [json.loads(line) for f in verdict_files for line in f.read_text().splitlines()]
    for v in verdicts:
        if v["status"] == "unscored":
            assert v["error"], "an unscored verdict says why"
        else:
            assert not v["error"] and v["attempts"] >= 1
    summary = json.loads((run_dir / "iter_000" / "summary.json").read_text())
    answers = [json.loads(line) for line in (run_dir / "iter_000" / "03_verdicts.jsonl").read_text().splitlines()]
    assert summary["answers"]["unscored"] == sum(v["status"] == "unscored" for v in answers)
    assert summary["answers"]["ok"] + summary["answers"]["violation"] + summary["answers"]["unscored"] == 3
    assert sum(v["status"] == "unscored" for v in verdicts) > 0, "with 45% faults and 2 attempts some go unscored"

    # the key was used on the wire, and is nowhere in what we wrote or printed
    assert_no_secret(run_dir, secret, result)


def assert_no_secret(run_dir: Path, secret: str, *results) -> None:
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"API key found in {path}"
    for result in results:
        assert secret not in result.stderr and secret not in result.stdout, "API key printed"


def test_an_oracle_that_echoes_the_key_in_its_errors_leaves_no_trace(data_dir, tmp_path):
    from iteralign.backends.embedded import embedded_gguf
    from iteralign.testing.openai_stub import StubServer, llama_server

    secret = "sk-echoed-9876543210zyxwvutsrq"
    with llama_server(embedded_gguf()) as upstream, \
            StubServer(upstream=upstream, fault_rate=0.5, faults=("500",), echo_headers_on_error=True, seed=3) as stub:
        oracle = ("{backend: openai, model: smollm2, base_url: '" + stub.base_url + "', api_key_env: "
                  "ITERALIGN_TEST_ORACLE_KEY, max_retries: 0, max_concurrency: 2, structured_output: json_object}")
        config = write_config(tmp_path, data_dir, "echo", oracle=oracle)
        result = run_cli(config, env={"ITERALIGN_TEST_ORACLE_KEY": secret}, args=["--accept-unscored", "--verbose"])
        echoed = stub.stats["500"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert echoed > 0, "the server never echoed anything: the test tested nothing"
    run_dir = tmp_path / "runs" / "echo"
    errors = [json.loads(line)["error"] for f in run_dir.rglob("*verdicts.jsonl") for line in f.read_text().splitlines()]
    assert any("***" in e for e in errors), "the echoed header reached the verdicts, scrubbed"
    assert_no_secret(run_dir, secret, result)


def test_an_outage_stops_the_stage_and_a_rerun_retries_exactly_those_calls(data_dir, tmp_path):
    from iteralign.backends.embedded import embedded_gguf
    from iteralign.testing.openai_stub import StubServer, llama_server

    with llama_server(embedded_gguf()) as upstream, StubServer(upstream=upstream, fault_rate=1.0, faults=("500",)) as stub:
        oracle = ("{backend: openai, model: smollm2, base_url: '" + stub.base_url + "', max_retries: 0, "
                  "max_concurrency: 2, structured_output: json_object}")
        config = write_config(tmp_path, data_dir, "outage", oracle=oracle)
        down = run_cli(config)
        failed_requests = stub.stats["500"]
        run_dir = tmp_path / "runs" / "outage"
        frozen = (run_dir / "baseline" / "09_probe_verdicts.jsonl").exists()
        stages = json.loads((run_dir / "baseline" / "stages.json").read_text())
        stub.fault_rate = 0.0  # the server comes back
        back = run_cli(config)
    assert down.returncode == 1, down.stderr[-2000:]
    message = down.stderr.strip().splitlines()[-1]
    assert message.startswith("error: baseline/09_probe_verdicts.jsonl: 2 answers got no reply") and "again" in message
    assert not frozen, "the outage was frozen into the run"
    assert stages["probe_judge"]["transport_failed"] == 2 and failed_requests >= 2
    assert back.returncode == 0, back.stderr[-3000:]
    stages = json.loads((run_dir / "baseline" / "stages.json").read_text())
    # nothing that had succeeded was asked again; the judge calls that had failed were
    assert all(times == 1 for _, times in call_rows(run_dir)), "a call that had succeeded was made again"
    assert stages["probe_judge"]["calls_retried"] >= 2 and stages["probe_judge"]["transport_failed"] == 0
    verdicts = [json.loads(line) for line in (run_dir / "baseline" / "09_probe_verdicts.jsonl").read_text().splitlines()]
    assert all(not v["transport_failed"] for v in verdicts)


def _copy_run(reference: Path, tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    """The reference run copied under tmp_path/runs, and a config pointing at it."""
    import shutil

    config = write_config(tmp_path, data_dir, "ref")
    shutil.copytree(reference, tmp_path / "runs" / "ref")
    return config, tmp_path / "runs" / "ref"


@pytest.mark.parametrize("damage", ["drop the last line", "cut the last line"])
def test_a_damaged_artifact_is_noticed_and_recomputed_from_the_cache(reference, data_dir, tmp_path, damage):
    config, run_dir = _copy_run(reference, tmp_path, data_dir)
    path = run_dir / "iter_000" / "03_verdicts.jsonl"
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + (lines[-1][:10] if damage == "cut the last line" else b""))
    result = run_cli(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iter_000/03_verdicts.jsonl is damaged" in result.stderr
    assert path.read_bytes() == original
    assert artifacts(run_dir) == artifacts(reference)
    assert all(times == 1 for _, times in call_rows(run_dir)), "the recomputation made calls again"


def test_a_moved_run_directory_resumes(reference, data_dir, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / "elsewhere" / "ref")
    config = tmp_path / "moved.yaml"
    config.write_text(TINY.format(name="ref", out=tmp_path / "elsewhere", data=data_dir, oracle=LLAMACPP_ORACLE))
    result = run_cli(config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert artifacts(tmp_path / "elsewhere" / "ref") == artifacts(reference)
    assert call_rows(tmp_path / "elsewhere" / "ref") == call_rows(reference)
