"""Config loading: shipped configs validate; every kind of mistake is named at once."""
import pytest

from iteralign.config import HFModel, OpenAIModel
from iteralign.config_loading import load_config
from iteralign.errors import ConfigError
from conftest import REPO


def test_demo_config_loads():
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.loop.iterations == 3 and isinstance(config.models.base, HFModel)
    # the demo's numbers come from the model-free refusal judge, measured before iteration 0,
    # starting from the shipped seed constitution, with a probe big enough for a +-10 point interval
    assert config.judge.mode == "refusal" and config.judge.check is not None
    assert config.constitution.start_from == "seed" and config.loop.probe_size >= 100
    assert set(config.eval.benchmarks) == {"xstest", "harmlessness"}


def test_the_all_llm_demo_is_kept():
    config = load_config(REPO / "configs" / "demo-llm-judge.yaml")
    assert config.judge.mode == "structured" and config.judge.reference == "refusal"


def test_paper_config_is_the_papers_setting():
    config = load_config(REPO / "configs" / "paper-llama2-7b.yaml")
    assert config.models.base.model == "meta-llama/Llama-2-7b-hf" and config.models.base.device == "cuda"
    assert isinstance(config.models.oracle, OpenAIModel)
    assert config.models.oracle.model == "gpt-3.5-turbo" and config.models.oracle.api_key_env == "OPENAI_API_KEY"
    assert config.loop.batch_size == 20


def test_overrides_are_typed_and_nested():
    config = load_config(REPO / "configs" / "demo.yaml", ["loop.iterations=5", "judge.mode=paper", "name=other"])
    assert config.loop.iterations == 5 and config.judge.mode == "paper" and config.name == "other"


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = """name: t
data: {sources: [{name: dangerousqa}]}
models:
  base: {backend: hf, model: embedded}
  oracle: {backend: llamacpp, model: embedded}
"""


def test_all_errors_reported_at_once_with_field_paths(tmp_path):
    path = _write(tmp_path, BASE + "loop: {batch_size: many, iteratons: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "loop.batch_size" in message and "loop.iteratons: unknown key" in message


def test_backend_specific_keys_are_checked(tmp_path):
    path = _write(tmp_path, BASE.replace("{backend: llamacpp, model: embedded}",
                                         "{backend: llamacpp, model: embedded, max_concurrency: 4}"))
    with pytest.raises(ConfigError, match=r"models\.oracle\.max_concurrency: unknown key"):
        load_config(path)


def test_bad_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "name: t\nloop: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)


def test_file_source_needs_a_path(tmp_path):
    path = _write(tmp_path, BASE.replace("{name: dangerousqa}", "{name: file}"))
    with pytest.raises(ConfigError, match="data.sources.0"):
        load_config(path)


def test_path_on_a_builtin_source_is_an_error(tmp_path):
    path = _write(tmp_path, BASE.replace("{name: dangerousqa}", "{name: dangerousqa, path: x.csv}"))
    with pytest.raises(ConfigError, match="only to name: file"):
        load_config(path)
