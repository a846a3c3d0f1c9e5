"""The run report and run comparison on a hand-made run directory (tests/report_fixture.py).

Covers: what the reader takes from each file, an interrupted run (a report of what finished plus
a visible note), fields the loop may not write yet (effects, merged, constitution.json), escaping
of model output, a self-contained page, report.md, `iteralign compare`, and bad input through the
CLI (one `error:` line, exit code 2, nothing written). The browser rendering is in
test_report_browser.py.
"""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from iteralign.cli import app
from iteralign.statistics import wilson_interval
from iteralign.report.compare import MISSING, compare_runs, config_differences
from iteralign.report.run_reader import fix_counts, read_run
from iteralign.report.run_report import write_report
from report_fixture import make_run


ALL_PLOTS = {"violation_rates", "effects", "tradeoff", "constitution_growth", "stage_times", "eval_hhh",
             "eval_truthfulqa_mc1", "eval_harmlessness", "eval_xstest"}


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <style> blocks."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def plot_images(page: str) -> dict[str, bytes]:
    images = {}
    for tag, attrs in parse(page).tags:
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix), attrs["src"][:60]
            images[attrs["data-plot"]] = base64.b64decode(attrs["src"][len(prefix):])
    return images


def wilson_text(hits: int, n: int) -> str:
    """How a metric of the fixture should read: value [low, high] n=..."""
    low, high = wilson_interval(hits, n)
    return f"{hits / n:.3f} [{round(low, 4):.3f}, {round(high, 4):.3f}] n={n}"


# ---- the reader ------------------------------------------------------------------------------


def test_reader_takes_each_number_from_its_file(tmp_path):
    run = read_run(make_run(tmp_path / "run"))
    assert run.name == "synthetic" and run.finished and run.notes == []
    assert [s.label for s in run.steps] == ["base", "iter 0", "iter 1"]
    assert run.baseline.probe["violation_rate"] == 0.75
    assert [s.probe["violation_rate"] for s in run.iterations] == [0.5, 0.3333]  # iter 1: 1 of 3 scored
    assert run.iterations[0].answers == {"n": 4, "ok": 1, "violation": 3, "unscored": 0, "violation_rate": 0.75}
    assert run.iterations[1].effects["in_weights"] == 0.25
    assert run.iterations[1].principles["merged"][0]["into"] == "P0.1"
    assert run.baseline.metric("hhh", "acc_harmless")["value"] == 0.5
    assert run.iterations[1].metric("xstest", "safe_refused")["value"] == pytest.approx(14 / 40)
    assert [p["status"] for p in run.constitution] == ["active", "retired", "merged"]
    assert [p["id"] for p in run.principles_added()] == ["P0.1", "P0.2"]
    # stages.json, not summary.json["stages"]: it also holds the eval stage timed after the summary
    assert set(run.baseline.stages) == {"probe_respond", "probe_judge", "eval"}
    assert list(run.iterations[0].stages)[-1] == "probe_judge" and len(run.iterations[0].stages) == 9
    assert run.stage_names()[:5] == ["respond", "judge", "propose", "revise", "probe_in_context_respond"]
    totals = run.totals()
    assert totals["calls_made"] == 3 * 1 + 2 * 9 * 2 and totals["calls_cached"] == 3


def test_interrupted_iteration_is_reported_from_its_artifacts(tmp_path):
    run = read_run(make_run(tmp_path / "run", interrupt_in="revise"))
    assert not run.finished
    last = run.iterations[-1]
    assert not last.finished and last.stopped_in == "revise"
    # counted from 03_verdicts.jsonl, as the loop's own tally would
    assert last.answers == {"n": 4, "ok": 1, "violation": 2, "unscored": 1, "violation_rate": 0.6667}
    assert last.revisions is None and last.probe is None and last.evaluation is None
    assert any("has not finished" in note for note in run.notes)
    assert any("Iteration 1" in note and "'revise'" in note for note in run.notes)
    assert run.iterations[0].finished and run.iterations[0].stopped_in is None


def test_damaged_optional_file_becomes_a_note(tmp_path):
    root = make_run(tmp_path / "run")
    (root / "iter_001" / "eval.json").write_text("{not json", encoding="utf-8")
    run = read_run(root)
    assert run.iterations[1].evaluation is None
    assert any("iter_001/eval.json could not be read" in note for note in run.notes)


def test_interrupted_in_the_in_context_probe(tmp_path):
    run = read_run(make_run(tmp_path / "run", interrupt_in="probe_in_context_judge"))
    assert run.iterations[-1].stopped_in == "probe_in_context_judge"
    assert run.iterations[-1].revisions["accepted"] == 1  # 05_revisions.jsonl was finished


def test_fix_counts():
    assert fix_counts({"fix_attempts": 5, "fix_passed": 1}) == (1, 5)
    assert fix_counts({"id": "P0.1"}) == (None, None)


# ---- report.html and report.md -----------------------------------------------------------------


def test_report_is_self_contained_with_every_plot(tmp_path):
    html_path, md_path = write_report(make_run(tmp_path / "run"), tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    parsed = parse(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "srcset", "poster", "action"):
            assert name not in attrs or attrs[name].startswith("data:"), (tag, attrs.get(name, "")[:80])
    style = "".join(parsed.styles)
    assert "url(" not in style and "@import" not in style
    images = plot_images(page)
    assert set(images) == ALL_PLOTS
    import numpy as np
    from PIL import Image

    for name, png in images.items():
        picture = Image.open(io.BytesIO(png))
        assert picture.format == "PNG" and picture.width > 200 and picture.height > 100, name
        colours = np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 20, f"{name} looks blank"


def test_report_escapes_model_output_and_shows_the_content(tmp_path):
    html_path, _ = write_report(make_run(tmp_path / "run"), tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page  # the fixture's answer, as text
    assert "<script" not in page
    assert "Content warning" in page and "<details>" in page
    assert "I can&#x27;t help with that" in page  # the revision beside it
    for expected in ("hhh", "acc_harmless", "truthfulqa_mc1", "safe_refused", "constitution in the prompt",
                     "merged into <strong>P0.1</strong>", "rejected as a repeat", "retired (revisions with it kept failing): <strong>P0.2</strong>", "50.0% (2/4)", "merged into P0.1",
                     "probe_judge", "served from the cache"):
        assert expected in page, expected


def test_absent_optional_fields_leave_their_parts_out(tmp_path):
    root = make_run(tmp_path / "run", with_eval=False, with_effects=False, with_constitution=False)
    for folder in ("iter_000", "iter_001"):  # a proposal with only the keys every version wrote
        path = root / folder / "04_principles.json"
        doc = json.loads(path.read_text())
        for key in ("merged", "proposed", "library", "repeated"):
            doc.pop(key)
        path.write_text(json.dumps(doc))
    html_path, md_path = write_report(root, tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    assert set(plot_images(page)) == {"violation_rates", "constitution_growth", "stage_times"}
    assert "No eval.json in this run" in page
    assert "this run has no constitution.json" in page
    assert "2 principles written" in md_path.read_text(encoding="utf-8")


def test_interrupted_run_report_says_what_did_not_finish(tmp_path):
    html_path, md_path = write_report(make_run(tmp_path / "run", interrupt_in="revise"), tmp_path / "out")
    page, summary = html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")
    assert 'class="note"' in page and "Iteration 1 is incomplete: it stopped in stage &#x27;revise&#x27;" in page
    assert "stopped in revise" in page and "not finished" in page
    assert "**Not finished**" in summary and "Iteration 1 is incomplete" in summary
    assert "violation_rates" in plot_images(page)  # what finished is still plotted


def test_report_md_summarises_the_run(tmp_path):
    _, md_path = write_report(make_run(tmp_path / "run"), tmp_path / "out")
    summary = md_path.read_text(encoding="utf-8")
    assert summary.startswith("# IterAlign run `synthetic`")
    assert "| iter 0 | 75.0% (3/4) | 66.7% (2/3) (1) | 50.0% (2/4) | 2 | 1.5 | finished |" in summary
    assert f"| hhh | acc_harmless | {wilson_text(5, 10)} | {wilson_text(7, 10)} |" in summary  # base, iter 1
    assert "3 principles (1 active, 1 merged, 1 retired)" in summary
    assert "[report.html](report.html)" in summary


# ---- the comparison ---------------------------------------------------------------------------


def test_compare_two_runs(tmp_path):
    a = read_run(make_run(tmp_path / "a"))
    b = read_run(make_run(tmp_path / "b", iterations=1, config={"seed": 7, "loop": {"iterations": 1},
                                                                      "eval": {"benchmarks": ["hhh"]}}))
    markdown = compare_runs(a, b)
    assert "# Run comparison: A `synthetic` vs B `synthetic`" in markdown
    assert "| base | n/a | n/a | n/a | n/a | 75.0% (3/4) | 75.0% (3/4) |" in markdown
    assert "| iter 1 | 66.7% (2/3, 1 unscored) | — |" in markdown  # B has no iteration 1
    assert "The last evaluated model of each run (A: iter 1, B: iter 0)." in markdown
    assert f"| harmlessness | violation_rate | {wilson_text(18, 40)} | {wilson_text(24, 40)} |" in markdown
    assert "| `seed` | 0 | 7 |" in markdown
    assert "| `loop.iterations` | 2 | 1 |" in markdown
    assert "| `loop.batch_size` | 4 | (absent) |" in markdown  # B's loop mapping has only iterations
    assert "`models.base.backend`" not in markdown  # equal keys are not listed
    assert "| constitution | 3 principles (1 active, 1 merged, 1 retired) |" in markdown
    assert '| `eval.benchmarks` | ["hhh", "truthfulqa_mc1", "harmlessness", "xstest"] | ["hhh"] |' in markdown
    assert "| `eval.limit` | 40 | (absent) |" in markdown


def test_config_differences_tell_null_from_absent():
    assert config_differences({"a": {"b": None}}, {"a": {}}) == [("a", MISSING, {}), ("a.b", None, MISSING)]
    assert config_differences({"x": 1, "y": {"z": [1, 2]}}, {"x": 1, "y": {"z": [1, 2]}}) == []
    assert config_differences({"x": None}, {}) == [("x", None, MISSING)]


# ---- the CLI ----------------------------------------------------------------------------------


def _one_error_line(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("make", [
    lambda p: p.mkdir(),  # an empty folder
    lambda p: (p.mkdir(), (p / "notes.txt").write_text("hi")),  # a folder of something else
    lambda p: None,  # nothing there
    lambda p: p.write_text("a file"),
])
def test_report_of_a_folder_that_is_not_a_run(tmp_path, make):
    target = tmp_path / "notarun"
    make(target)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["report", str(target), "--out", str(tmp_path / "out")])
    _one_error_line(result, str(target), "runs/demo")
    assert sorted(tmp_path.rglob("*")) == before, "nothing may be written"


def test_report_of_a_run_that_never_started(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.yaml").write_text("name: x\n")
    result = CliRunner().invoke(app, ["report", str(root)])
    _one_error_line(result, "no manifest.json", "iteralign run")
    assert sorted(p.name for p in root.iterdir()) == ["config.yaml"]


def test_report_through_the_real_cli(tmp_path):
    """A subprocess, as a user runs it: exit codes, and a one-line error with no traceback."""
    root = make_run(tmp_path / "run", interrupt_in="judge")
    done = subprocess.run([sys.executable, "-m", "iteralign.cli", "report", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"report: {root / 'report.html'}" in done.stdout
    assert "stopped in stage &#x27;judge&#x27;" in (root / "report.html").read_text(encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "iteralign.cli", "report", str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path}: not an iteralign run (no manifest.json or "
                                               "config.yaml); pass a folder written by `iteralign run`, e.g. runs/demo"]


def test_compare_cli_prints_and_writes(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", config={"seed": 3})
    out = tmp_path / "cmp" / "compare.md"
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").strip() == result.stdout.strip()
    assert "| `seed` | 0 | 3 |" in result.stdout


def test_compare_with_a_folder_that_is_not_a_run(tmp_path):
    a = make_run(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "compare.md"
    result = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "empty"), "--out", str(out)])
    _one_error_line(result, str(tmp_path / "empty"), "not an iteralign run")
    assert not out.exists()


def test_headline_states_the_paired_change_and_the_judges_agreement(tmp_path):
    root = make_run(tmp_path / "run")
    (root / "judge_check.json").write_text(json.dumps({"judge": "refusal (model-free)", "overall": {
        "n": 1350, "binary_agreement": 0.939, "binary_ci": [0.925, 0.951], "kappa": 0.878}}))
    html_path, md_path = write_report(root)
    summary = md_path.read_text()
    headline = summary[summary.index("## Headline"):summary.index("## Violation rates")]
    # the fixture's probe: base v v v ok, iteration 1 v ok ok unscored -> three pairs scored on both sides
    assert "Held-out violation rate (probe): 100.0% (base) \u2192 33.3% (iter 1)" in headline
    assert "change -66.7 points, paired 95% CI" in headline and "2 better, 0 worse of n=3 paired items" in headline
    assert "(McNemar p = 0.500). [judged by refusal (model-free), agreement with human labels 0.939]" in headline
    assert "Judge: refusal (model-free); agreement with human labels: 0.939 (95% CI 0.925-0.951, kappa 0.878)" \
        in headline
    page = html_path.read_text()
    assert page.index('class="headline"') < page.index("<h2>Violation rates</h2>")
    assert "agreement with human labels: 0.939" in page


def test_headline_without_a_judge_check_says_so(tmp_path):
    _, md_path = write_report(make_run(tmp_path / "run"))
    assert "agreement with human labels: not measured (set judge.check to measure it)" in md_path.read_text()


def test_reference_judge_columns_appear_when_the_run_has_them(tmp_path):
    root = make_run(tmp_path / "run")
    summary_path = root / "iter_000" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["answers"].update(reference_violation_rate=0.5, reference_agreement=0.25, reference_kappa=-0.2,
                              reference_n=4)
    summary_path.write_text(json.dumps(summary))
    html_path, md_path = write_report(root)
    assert "| iter 0 | answers | 75.0% | 50.0% | 25.0% | -0.200 | 4 |" in md_path.read_text()
    assert "The judge against the reference judge" in html_path.read_text()


def test_training_cell_shows_dpo_loss_and_reward_margins():
    from iteralign.report import formatting as fmt

    assert fmt.training({"train_loss": 0.41}) == "0.41"
    assert fmt.training({"train_loss": None}) == ""
    dpo = {"train_loss": 0.52, "training": {"objective": "sft+dpo", "sft": {"loss": 1.2, "steps": 2},
                                            "dpo": {"pairs": 5, "beta": 0.1, "loss_type": "sigmoid",
                                                    "rewards_margins_last": 0.834, "rewards_accuracies_last": 1.0}}}
    assert fmt.training(dpo) == "SFT 1.2, then DPO 0.52: margin +0.83, chosen wins 100% (beta 0.1, sigmoid, 5 pairs)"
