"""Issue 10's holes, each as it was found: secrets in config and errors, bad values that got past
validation, the lock, damaged files, Markdown outputs. Fast: no model is loaded (the run stops
before), except where a test says so."""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from test_cli_errors import CONFIG, assert_clean_failure, good_lines, run_cli

SECRET = "sk-planted-0123456789abcdefABCDEF"


def _config(tmp_path, extra: str = "", replace: tuple[str, str] | None = None) -> str:
    text = CONFIG.format(out=tmp_path / "runs", data=tmp_path, prompts=tmp_path / "prompts.jsonl") + extra
    if replace:
        text = text.replace(*replace)
    return text


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "iteralign.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ---- secrets -------------------------------------------------------------------------------------

def test_credentials_in_base_url_are_refused_without_echoing_them(tmp_path):
    oracle = f"oracle: {{backend: openai, model: m, base_url: 'http://user:{SECRET}@127.0.0.1:9/v1'}}"
    result = run_cli(tmp_path, good_lines(), _config(tmp_path, replace=("oracle: {backend: llamacpp, model: embedded}",
                                                                        oracle)))
    assert_clean_failure(result, tmp_path, "models.oracle.base_url", "credentials", "api_key_env")
    assert SECRET not in result.stderr


def test_a_key_typed_into_api_key_env_is_not_printed_back(tmp_path):
    oracle = f"oracle: {{backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', api_key_env: '{SECRET}'}}"
    result = run_cli(tmp_path, good_lines(), _config(tmp_path, replace=("oracle: {backend: llamacpp, model: embedded}",
                                                                        oracle)))
    assert_clean_failure(result, tmp_path, "models.oracle.api_key_env", "NAME of the environment variable")
    assert SECRET not in result.stderr and "planted" not in result.stderr


def test_a_rejected_string_is_never_echoed(tmp_path):
    result = run_cli(tmp_path, good_lines(), _config(tmp_path, f"seed: {SECRET}\n"))
    assert_clean_failure(result, tmp_path, "seed")
    assert SECRET not in result.stderr


def test_scrub_removes_registered_keys_headers_and_url_credentials():
    from iteralign.redact import register, scrub

    register(SECRET)
    echoed = f'500: {{"headers": {{"authorization": "Bearer {SECRET}", "x-api-key": "zzzzzzzz"}}}} at http://u:p4ss@h/v1'
    cleaned = scrub(echoed)
    assert SECRET not in cleaned and "zzzzzzzz" not in cleaned and "p4ss" not in cleaned
    assert scrub("Authorization: Bearer abcdefghijklmnop") == "Authorization: ***"
    assert scrub("the answer is 42") == "the answer is 42"


def test_the_openai_backend_scrubs_an_echoed_key_from_errors_and_replies():
    from iteralign.backends.base import BackendCallError, GenParams
    from iteralign.backends.openai_compat import OpenAIBackend
    from iteralign.testing.openai_stub import StubServer

    def echo(request):  # a 200 reply whose text carries the request's Authorization header
        return f"you sent {request['_headers'].get('authorization')}"

    env_name = "ITERALIGN_TEST_SCRUB_KEY"
    os.environ[env_name] = SECRET
    try:
        with StubServer(reply=echo, echo_headers_on_error=True) as stub:
            backend = OpenAIBackend("m", spec_id="s", base_url=stub.base_url, api_key_env=env_name, max_retries=0)
            [text] = backend.generate_batch([[{"role": "user", "content": "hi"}]], GenParams(max_new_tokens=4))
            assert SECRET not in text and "***" in text
        with StubServer(fault_rate=1.0, faults=("500",), echo_headers_on_error=True) as stub:
            backend = OpenAIBackend("m", spec_id="s", base_url=stub.base_url, api_key_env=env_name, max_retries=0)
            with pytest.raises(BackendCallError) as caught:
                backend.generate_batch([[{"role": "user", "content": "hi"}]], GenParams(max_new_tokens=4))
            assert SECRET not in str(caught.value)
    finally:
        os.environ.pop(env_name)


# ---- values that got past validation -------------------------------------------------------------

@pytest.mark.parametrize("override", ["train.learning_rate=.inf", "train.epochs=.inf", "generation.temperature=.inf",
                                      "train.learning_rate=.nan"])
def test_infinite_or_nan_floats_are_refused(tmp_path, override):
    key = override.split("=")[0]
    assert_clean_failure(run_cli(tmp_path, good_lines(), args=[override]), tmp_path, key, "finite")


def test_duplicate_yaml_keys_name_the_key_and_line(tmp_path):
    text = _config(tmp_path, "loop: {iterations: 2}\nseed: 1\nloop: {batch_size: 3}\n")
    line = text.splitlines().index("loop: {batch_size: 3}") + 1
    assert_clean_failure(run_cli(tmp_path, good_lines(), text), tmp_path, f"line {line}", "duplicate key 'loop'")


def test_a_lone_surrogate_in_a_data_file_is_a_line_error(tmp_path):
    data = good_lines(3) + b'{"prompt": "broken \\ud800 text"}\n'
    assert_clean_failure(run_cli(tmp_path, data), tmp_path, "prompts.jsonl:4", "surrogate")


def test_output_dir_that_is_a_file_or_not_writable(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    result = run_cli(tmp_path, good_lines())
    assert result.returncode == 2 and "is a file" in result.stderr and blocker.read_text() == "not a folder"
    blocker.unlink()
    if os.geteuid() != 0:  # root writes anywhere; the check is for everyone else
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = run_cli(tmp_path, good_lines(), _config(tmp_path).replace(f"output_dir: {tmp_path / 'runs'}",
                                                                          f"output_dir: {locked / 'runs'}"))
        assert result.returncode == 2 and "not writable" in result.stderr


@pytest.mark.parametrize("base, needle", [
    ("{backend: hf, model: /no/such/model/folder}", "neither a model folder nor a hub id"),
    ("{backend: hf, model: embedded, device: gpu0}", "models.base.device"),
    ("{backend: hf, model: embedded, device: cuda}", "no CUDA device"),
])
def test_a_base_model_that_cannot_load_leaves_nothing_behind(tmp_path, base, needle):
    text = _config(tmp_path, replace=("base: {backend: hf, model: embedded}", f"base: {base}"))
    assert_clean_failure(run_cli(tmp_path, good_lines(), text), tmp_path, needle)


def test_a_missing_start_from_is_found_before_any_work(tmp_path):
    text = _config(tmp_path, "constitution: {start_from: /no/such/constitution.json}\n")
    assert_clean_failure(run_cli(tmp_path, good_lines(), text), tmp_path, "constitution.start_from", "not found")


def test_target_modules_that_name_no_module(tmp_path):
    text = _config(tmp_path, "train: {target_modules: [q_proj, attn.c_attn]}\n")
    assert_clean_failure(run_cli(tmp_path, good_lines(), text), tmp_path, "train.target_modules", "attn.c_attn",
                         "q_proj")  # the message lists the real modules


def test_option_errors_are_one_line_not_a_box(tmp_path):
    result = _cli("eval", "embedded", "--benchmarks", "hhh", "--limit", "0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--limit" in result.stderr and "\u256d" not in result.stderr


def test_eval_bad_inputs_are_one_line(tmp_path):
    empty = _cli("eval", "embedded", "--benchmarks", "", "--out", str(tmp_path / "x.json"))
    assert empty.returncode == 2 and "no benchmark given" in empty.stderr and not (tmp_path / "x.json").exists()
    folder = _cli("eval", "embedded", "--benchmarks", "hhh", "--out", str(tmp_path))
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{not json")
    garbage = _cli("eval", "embedded", "--adapter", str(adapter), "--benchmarks", "hhh", "--out",
                   str(tmp_path / "y.json"), "--data-dir", str(tmp_path))
    assert garbage.returncode == 2 and "adapter_config.json: not valid JSON" in garbage.stderr
    assert garbage.stderr.strip().count("\n") == 0


# ---- the run directory ---------------------------------------------------------------------------

def test_a_second_process_on_a_locked_run_stops_with_the_holders_pid(tmp_path):
    (tmp_path / "prompts.jsonl").write_bytes(good_lines())
    run_dir = tmp_path / "runs" / "bad"
    run_dir.mkdir(parents=True)
    (tmp_path / "config.yaml").write_text(_config(tmp_path))
    from iteralign.config_loading import load_config
    from iteralign.store.run_dir import RunDir

    holder = RunDir(run_dir)
    holder.open(load_config(tmp_path / "config.yaml"))  # this process now holds the lock
    try:
        result = _cli("run", str(tmp_path / "config.yaml"))
        assert result.returncode == 2, result.stderr
        assert f"PID {os.getpid()}" in result.stderr and "another iteralign process" in result.stderr
    finally:
        holder.close()
    with open(run_dir / "run.lock") as handle:  # released: anyone may take it now
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_damaged_call_cache_is_one_line(tmp_path):
    from iteralign.errors import RunDirError
    from iteralign.store.call_cache import CallCache

    path = tmp_path / "calls.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunDirError, match="calls.sqlite: not a readable call cache"):
        CallCache(path)


def test_a_failed_call_is_remembered_and_its_retry_counted(tmp_path):
    from iteralign.store.call_cache import CallCache

    cache = CallCache(tmp_path / "calls.sqlite")
    assert cache.fail("k", "spec", "HTTP 500") is False
    assert cache.fail("k", "spec", "HTTP 500") is True
    assert cache.put("k", "spec", {"q": 1}, ["a"], 0.1) is True  # a retry that worked
    assert cache.put("other", "spec", {"q": 2}, ["b"], 0.1) is False
    with sqlite3.connect(tmp_path / "calls.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 0
    cache.close()


def test_report_and_constitution_on_valid_json_of_the_wrong_shape(tmp_path):
    from report_fixture import make_run

    root = make_run(tmp_path / "run")
    (root / "iter_000" / "summary.json").write_text("[1, 2]")
    (root / "iter_001" / "04_principles.json").write_text('{"added": "not a list", "failures": "x"}')
    (root / "baseline" / "eval.json").write_text('{"benchmarks": {"hhh": [1]}}')
    (root / "constitution.json").write_text('{"principles": [1, "two"]}')
    result = _cli("report", str(root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "summary.json could not be read (a list where a dict belongs)" in (tmp_path / "out" / "report.md").read_text()
    (root / "constitution.json").write_text("[]")
    result = _cli("constitution", str(root))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not an iteralign constitution.json" in result.stderr


def test_report_into_a_read_only_folder_is_one_line(tmp_path):
    from report_fixture import make_run

    root = make_run(tmp_path / "run")
    os.chmod(root, 0o500)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("this user can write anywhere (root): a read-only folder cannot be made")
        result = _cli("report", str(root))
        assert result.returncode == 2 and "cannot write the report there" in result.stderr
    finally:
        os.chmod(root, 0o700)


def test_markdown_outputs_escape_html_from_model_text(tmp_path):
    from report_fixture import make_run

    from iteralign.report.constitution import render_constitution
    from iteralign.records import Principle, RedTeamPrompt
    from iteralign.report.run_report import write_report

    _, md_path = write_report(make_run(tmp_path / "run"), tmp_path / "out")
    markdown = md_path.read_text()
    principle = Principle(id="P0.1", text="Refuse <script>alert(1)</script> always", rationale="<img src=http://x/a.png>",
                          iteration=0, evidence=["p"])
    document = render_constitution([principle], {"p": RedTeamPrompt(id="p", text="<b>how</b>", source="t", split="train")},
                                   "r", failures={"p": "<img src=http://evil/leak.png>"})
    for text in (markdown, document):
        assert "<script>" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;" in document and "&lt;img src=http://evil/leak.png&gt;" in document
