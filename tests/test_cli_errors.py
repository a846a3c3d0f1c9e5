"""Bad input through the real CLI: one clear line, exit code 2, no traceback, nothing written.

Each case runs `iteralign run` in a subprocess, as a user would, and checks that the run
directory was not created. No model is loaded: validation happens before anything else.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """name: bad
output_dir: {out}
data:
  dir: {data}
  sources: [{{name: file, path: {prompts}, column: prompt}}]
  max_prompt_chars: 4000
models:
  base: {{backend: hf, model: embedded}}
  oracle: {{backend: llamacpp, model: embedded}}
"""


def run_cli(tmp_path, prompts_bytes: bytes | None, config_text: str | None = None, args=(), env=None):
    prompts = tmp_path / "prompts.jsonl"
    if prompts_bytes is not None:
        prompts.write_bytes(prompts_bytes)
    config = tmp_path / "config.yaml"
    config.write_text(config_text or CONFIG.format(out=tmp_path / "runs", data=tmp_path, prompts=prompts))
    result = subprocess.run([sys.executable, "-m", "iteralign.cli", "run", str(config), *args],
                            capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    return result


def assert_clean_failure(result, tmp_path, *needles):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "runs").exists(), "a failed start must not leave a run directory"


def good_lines(n=5):
    return b"".join(json.dumps({"prompt": f"question number {i}?"}).encode() + b"\n" for i in range(n))


def test_unknown_config_key(tmp_path):
    text = CONFIG.format(out=tmp_path / "runs", data=tmp_path, prompts=tmp_path / "p.jsonl") + "loop: {iteratons: 2}\n"
    assert_clean_failure(run_cli(tmp_path, good_lines(), text), tmp_path, "config.yaml", "loop.iteratons", "unknown key")


def test_wrong_type(tmp_path):
    text = CONFIG.format(out=tmp_path / "runs", data=tmp_path, prompts=tmp_path / "p.jsonl") + "seed: twelve\n"
    assert_clean_failure(run_cli(tmp_path, good_lines(), text), tmp_path, "seed", "integer")


def test_wrong_type_in_override(tmp_path):
    assert_clean_failure(run_cli(tmp_path, good_lines(), args=["loop.batch_size=lots"]), tmp_path, "loop.batch_size")


def test_missing_data_file(tmp_path):
    assert_clean_failure(run_cli(tmp_path, None), tmp_path, "prompts.jsonl", "not found")


def test_malformed_jsonl_line(tmp_path):
    data = good_lines(2) + b'{"prompt": "unterminated\n' + good_lines(1)
    assert_clean_failure(run_cli(tmp_path, data), tmp_path, "prompts.jsonl:3", "JSON")


def test_empty_prompt(tmp_path):
    data = good_lines(3) + json.dumps({"prompt": "   "}).encode() + b"\n"
    assert_clean_failure(run_cli(tmp_path, data), tmp_path, "prompts.jsonl:4", "empty")


def test_one_megabyte_prompt(tmp_path):
    data = good_lines(4) + json.dumps({"prompt": "a" * (1 << 20)}).encode() + b"\n"
    assert_clean_failure(run_cli(tmp_path, data), tmp_path, "prompts.jsonl:5", "max_prompt_chars")


def test_invalid_utf8(tmp_path):
    data = good_lines(6) + b'{"prompt": "caf\xe9 au lait"}\n'
    assert_clean_failure(run_cli(tmp_path, data), tmp_path, "prompts.jsonl:7", "UTF-8")


def test_missing_config_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "iteralign.cli", "run", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert_clean_failure(result, tmp_path, "nope.yaml", "not found")


def test_missing_api_key_variable(tmp_path):
    text = CONFIG.format(out=tmp_path / "runs", data=tmp_path, prompts=tmp_path / "prompts.jsonl").replace(
        "oracle: {backend: llamacpp, model: embedded}",
        "oracle: {backend: openai, model: gpt-4o-mini, api_key_env: ITERALIGN_NO_SUCH_KEY}")
    env = {k: v for k, v in os.environ.items() if k != "ITERALIGN_NO_SUCH_KEY"}
    (tmp_path / "prompts.jsonl").write_bytes(good_lines(20))
    (tmp_path / "config.yaml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "iteralign.cli", "run", str(tmp_path / "config.yaml")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert_clean_failure(result, tmp_path, "ITERALIGN_NO_SUCH_KEY")


def test_changed_config_on_resume_is_refused(tmp_path):
    from iteralign.config_loading import load_config
    from iteralign.errors import RunDirError
    from iteralign.store.run_dir import RunDir

    (tmp_path / "prompts.jsonl").write_bytes(good_lines())
    (tmp_path / "config.yaml").write_text(CONFIG.format(out=tmp_path / "runs", data=tmp_path,
                                                        prompts=tmp_path / "prompts.jsonl"))
    first = load_config(tmp_path / "config.yaml")
    assert RunDir(first.run_dir).open(first) is False
    assert RunDir(first.run_dir).open(load_config(tmp_path / "config.yaml", ["loop.iterations=9"])) is True
    with pytest.raises(RunDirError, match="seed"):
        RunDir(first.run_dir).open(load_config(tmp_path / "config.yaml", ["seed=1"]))
