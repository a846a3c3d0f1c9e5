"""The command line: parse, call the public API, print. Nothing else lives here.

Exit codes: 0 success, 2 a problem with the user's input (one line on stderr, no traceback),
1 anything else (an outage is one line too; a bug shows its traceback). Everything printed,
tracebacks included, is scrubbed of API keys (redact.py).
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer

from iteralign.errors import IterAlignError, UserError
from iteralign.redact import ScrubbingFilter, scrub

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Align a language model the IterAlign way.")


def _quiet_libraries() -> None:
    # deprecation notices about the libraries' own defaults are not the user's to act on
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # through the environment, read when each library is first imported: importing them here
    # only to switch them off cost 1.3 s of every command's start (datasets alone 0.7 s), and
    # `iteralign eval` never imports datasets at all
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars read this too
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "datasets", "httpx", "openai", "peft", "trl", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if "transformers" in sys.modules:  # imported before us (e.g. by a test): switch it off directly
        transformers = sys.modules["transformers"]
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def _setup_output(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from iteralign import progress

    console = Console(stderr=True)
    handler = RichHandler(console=console, show_path=False, markup=False)
    handler.addFilter(ScrubbingFilter())  # a server's error text can echo the request's headers
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", handlers=[handler])
    _quiet_libraries()
    if not console.is_terminal:
        return  # logs a line at every tenth of the work instead of redrawing a bar

    @contextmanager
    def bar(description: str, total: int):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bars:
            task_id = bars.add_task(description, total=total)

            class Task:
                def advance(self, n: int = 1) -> None:
                    bars.advance(task_id, n)

            yield Task()

    progress.set_reporter(bar)


def _user_cache_file(given: Path | None, name: str) -> Path:
    """The cache file the user gave, or `name` in iteralign's cache folder (made on first use)."""
    from iteralign.backends.embedded import cache_root

    path = given or cache_root() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot make the cache folder ({exc.strerror}); give --cache FILE "
                        "somewhere writable, or --no-cache") from None
    return path


def _fail(exc: IterAlignError) -> None:
    typer.echo(f"error: {scrub(str(exc))}", err=True)
    raise typer.Exit(exc.exit_code)


def _run(config_path: Path, overrides: list[str], force: bool = False, accept_unscored: bool = False) -> None:
    from iteralign.config_loading import load_config
    from iteralign.loop import run

    config = load_config(config_path, overrides)
    result = run(config, force=force, accept_unscored=accept_unscored)
    typer.echo(f"run directory: {result.run_dir}")
    for s in result.iterations:
        rates = {name: getattr(s, name).get("violation_rate") for name in ("answers", "revisions", "probe")}
        typer.echo(f"iteration {s.iteration}: violation rate answers={rates['answers']} "
                   f"revisions={rates['revisions']} probe={rates['probe']} (unscored {s.answers['unscored']}); "
                   f"principles +{len(s.principles_added)}; SFT examples {s.sft_examples}; loss {s.train_loss}; "
                   f"probe answers changed by training {s.probe_answers_changed}/{s.probe['n']}"
                   + (f"; generated with adapter {s.adapter_in}" if s.adapter_in else ""))
    typer.echo(f"stopped: {result.stop_reason}")
    from iteralign.report.run_report import write_report

    html_path, md_path = write_report(result.run_dir)  # a finished run always comes with its report
    typer.echo(f"constitution: {result.run_dir / 'constitution.md'} (iteralign constitution {result.run_dir})")
    typer.echo(f"report: {html_path} (summary: {md_path})")


@app.command("run")
def run_command(
    config: Path = typer.Argument(..., help="YAML config file"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. loop.iterations=2"),
    force: bool = typer.Option(False, "--force", help="go on when judge-check is below judge.check.min_agreement"),
    accept_unscored: bool = typer.Option(False, "--accept-unscored",
                                         help="keep answers the judge never replied to (an outage) as unscored"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run (or resume) the IterAlign loop described by CONFIG."""
    _setup_output(verbose)
    try:
        _run(config, overrides or [], force, accept_unscored)
    except IterAlignError as exc:
        _fail(exc)


@app.command("demo")
def demo_command(
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Three iterations on the embedded SmolLM2-135M-Instruct, judged by the refusal judge, no network."""
    _setup_output(verbose)
    with resources.as_file(resources.files("iteralign") / "configs" / "demo.yaml") as path:
        try:
            _run(path, overrides or [])
        except IterAlignError as exc:
            _fail(exc)


@app.command("eval")
def eval_command(
    model: str = typer.Argument(..., help='"embedded", a model folder or hub id (hf), or a .gguf (llamacpp)'),
    benchmarks: str = typer.Option(..., "--benchmarks", "-b", help="comma-separated, e.g. hhh,truthfulqa_mc1"),
    backend: str = typer.Option("hf", "--backend", help="hf | llamacpp | openai"),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="a LoRA adapter folder (hf), e.g. runs/demo/iter_001/adapter"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N examples of each benchmark"),
    oracle: str = typer.Option("embedded", "--oracle", help='judge of the judged benchmarks: "refusal" (the '
                               'model-free refusal judge), or a model: "embedded", "openai:MODEL[@URL]", '
                               '"llamacpp:FILE.gguf", or a YAML file with a model spec or a run config'),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="default: $ITERALIGN_DATA_DIR"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    dromedary_first_half_only: bool = typer.Option(
        False, "--dromedary-first-half-only",
        help="truthfulqa_mc1_dromedary: score only the first half of the answers, as Dromedary's released script"),
    out: Path = typer.Option(Path("eval_results.json"), "--out", help="where to write the results JSON"),
    dtype: str = typer.Option("float32", "--dtype", help="hf weights: float32 (the numbers lm-eval gives), "
                              "bfloat16 (faster on CPUs with bf16 instructions; close, not equal), float16, auto"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="the call cache: every score and answer, so a "
                                         "repeated eval costs nothing (default: ~/.cache/iteralign/eval_calls.sqlite)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="compute everything (nothing read from or written to a cache)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Evaluate MODEL on benchmarks; write every metric with its n and 95% interval, and every example."""
    _setup_output(verbose)
    try:
        import time
        from typing import get_args

        from iteralign.backends.registry import parse_model_string
        from iteralign.config import DromedaryOptions, EvalOptions, GenerationConfig, HFModel, JudgeConfig
        from iteralign.evaluate.runner import evaluate, results_document
        from iteralign.backends.cached import CallCounts
        from iteralign.store.call_cache import CallCache
        from iteralign.store.run_dir import write_json

        if out.is_dir():
            raise UserError(f"--out {out}: is a folder; give a file name such as {out / 'eval_results.json'}")
        names = [b.strip() for b in benchmarks.split(",") if b.strip()]
        spec = parse_model_string(f"{backend}:{model}", "MODEL")
        if adapter:
            spec = spec.model_copy(update={"adapter": adapter}) if spec.backend == "hf" else None
            if spec is None:
                raise UserError("--adapter: only an hf model takes a LoRA adapter folder")
        if dtype != "float32":
            if spec.backend != "hf":
                raise UserError("--dtype: only an hf model has a weight dtype to choose")
            choices = get_args(HFModel.model_fields["dtype"].annotation)  # model_copy does not validate
            if dtype not in choices:
                raise UserError(f"--dtype {dtype}: choose one of {', '.join(choices)}")
            spec = spec.model_copy(update={"dtype": dtype})
        if cache is not None and no_cache:
            raise UserError("--cache and --no-cache: give one of them")
        refusal = oracle.strip().lower() == "refusal"
        judge_spec = None if refusal else parse_model_string(oracle, "--oracle")
        folder = data_dir or (Path(os.environ["ITERALIGN_DATA_DIR"]) if os.environ.get("ITERALIGN_DATA_DIR") else None)
        options = EvalOptions(truthfulqa_mc1_dromedary=DromedaryOptions(first_half_only=dromedary_first_half_only))
        start = time.perf_counter()
        cache_file = None if no_cache else _user_cache_file(cache, "eval_calls.sqlite")
        calls = CallCache(cache_file or ":memory:")
        counts = CallCounts()
        try:
            results = evaluate(spec, names, data_dir=folder, limit=limit, oracle=judge_spec,
                               generation=GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0),
                               judge=JudgeConfig(mode="refusal") if refusal else None, options=options, cache=calls,
                               counts=counts)
        finally:
            calls.close()
        write_json(out, results_document(results, time.perf_counter() - start))
    except IterAlignError as exc:
        _fail(exc)
    for result in results.values():
        for line in result.summary_lines():
            typer.echo(line)
    typer.echo(f"model calls: {counts.made} made, {counts.cached} served from the cache"
               + (f" ({cache_file})" if cache_file else " (--no-cache)"))
    if dtype != "float32":
        typer.echo(f"weights in {dtype}: scores are close to, not equal to, float32 (lm-eval's numbers)")
    typer.echo(f"results: {out}")


@app.command("judge-check")
def judge_check_command(
    judge: str = typer.Option(..., "--judge", help='"refusal" (the model-free refusal judge), or an oracle: '
                              '"embedded", "openai:MODEL[@URL]", "llamacpp:FILE.gguf", or a YAML file'),
    mode: str = typer.Option("structured", "--mode", help="how an oracle is asked: structured | paper"),
    sets: str = typer.Option("", "--sets", help="comma-separated checks (default all): xstest-completions, "
                             "xstest-prompts, hh-rlhf-pairs, hhh-pairs"),
    xstest_completions: Optional[List[Path]] = typer.Option(
        None, "--xstest-completions", help="CSV files with XSTest's columns (prompt, completion, final_label); "
        "default: the shared XSTest completions"),
    files: Optional[List[Path]] = typer.Argument(None, help="more --xstest-completions files (for shell globs)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="a seeded subset: N completions per file and N "
                                        "prompts (spread over the prompt types), N pairs"),
    seed: int = typer.Option(0, "--seed", help="the subsets' and the oracle's seed"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="default: $ITERALIGN_DATA_DIR"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="the call cache (default: "
                                         "~/.cache/iteralign/judge_check_calls.sqlite)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the figures to this JSON file"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Measure a judge against human labels: agreement, F1, pair accuracy, with 95% intervals."""
    _setup_output(verbose)
    try:
        from iteralign.judging.judge_check import judge_check

        folder = data_dir or (Path(os.environ["ITERALIGN_DATA_DIR"]) if os.environ.get("ITERALIGN_DATA_DIR") else None)
        names = [s.strip() for s in sets.split(",") if s.strip()]
        completion_files = list(xstest_completions or []) + list(files or [])
        if completion_files and not names:
            names = ["xstest-completions"]  # files given: that is the check asked for
        document, lines = judge_check(judge, mode, names, completion_files, folder, limit, out, seed, cache)
    except IterAlignError as exc:
        _fail(exc)
    for line in lines:
        typer.echo(line)
    if out:
        typer.echo(f"results: {out}")


@app.command("constitution")
def constitution_command(
    run_dir: Path = typer.Argument(..., help="a run directory, e.g. runs/demo"),
    fmt: str = typer.Option("md", "--format", help="md (a document, grouped by theme) | json (the library)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write here instead of printing"),
) -> None:
    """Print (or write) the constitution a run discovered: its principles, statuses and fix rates."""
    try:
        from iteralign.constitution.export import export_constitution
        from iteralign.store.run_dir import write_text_atomic

        if fmt not in ("md", "json"):
            raise UserError(f"--format {fmt}: choose md or json")
        text = export_constitution(run_dir, fmt)
        if out:
            write_text_atomic(out, text)
    except IterAlignError as exc:
        _fail(exc)
    if out:
        typer.echo(f"constitution: {out}")
    else:
        typer.echo(text, nl=False)


@app.command("report")
def report_command(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iteralign run`, e.g. runs/demo"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for report.html and report.md (default: RUN_DIR)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write RUN_DIR's report: one self-contained report.html (plots inline) and a short report.md."""
    _setup_output(verbose)
    try:
        from iteralign.report.run_report import write_report

        html_path, md_path = write_report(run_dir, out)
    except IterAlignError as exc:
        _fail(exc)
    typer.echo(f"report: {html_path}")
    typer.echo(f"summary: {md_path}")


@app.command("compare")
def compare_command(
    run_a: Path = typer.Argument(..., help="first run directory (A)"),
    run_b: Path = typer.Argument(..., help="second run directory (B)"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the Markdown to this file"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Compare two runs side by side (rates, final evaluation, constitution, time, config) as Markdown."""
    _setup_output(verbose)
    try:
        from iteralign.report.compare import compare_dirs

        markdown = compare_dirs(run_a, run_b, out)
    except IterAlignError as exc:
        _fail(exc)
    typer.echo(markdown)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except IterAlignError as exc:  # raised outside a command's own handler
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(1)
    except typer.exceptions.TyperException as exc:  # a bad option or argument: one line, not a box
        if not hasattr(exc, "format_message"):
            raise
        hint = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
        print(f"error: {scrub(exc.format_message())}{hint}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception:  # a bug: show where, without any key a message might carry
        import traceback

        print(scrub(traceback.format_exc()), file=sys.stderr, end="")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
