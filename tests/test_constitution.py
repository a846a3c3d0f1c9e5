"""The principle library on hand-made cases: merging, retrieval, fix rate, retirement, loading,
the three effect measurements, and the exported document.

A fake embedder maps each text to a hand-set vector, so every similarity below is known; one
slow test checks the packaged all-MiniLM-L6-v2 itself ranks a paraphrase above an unrelated text.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from iteralign.backends.cached import CallCounts
from iteralign.config import Config
from iteralign.constitution import library as lib
from iteralign.constitution.export import export_constitution
from iteralign.constitution.retrieval import relevant_principles
from iteralign.errors import ConfigError, RunDirError
from iteralign.data.redteam import RedTeamSet
from iteralign.loop import Run, probe_in_context
from iteralign.run_summary import effects_summary
from iteralign.store.run_dir import RunDir
from iteralign.records import Principle, RedTeamPrompt, Response, Revision, Verdict
from iteralign.store.run_dir import write_json, write_records


class FakeEmbedder:
    """Unit vectors from a table; unknown texts are an error, so a test cannot pass by accident."""

    name = "fake"

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = {t: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for t, v in vectors.items()}

    def embed(self, texts):
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 2), dtype=np.float32)


def principle(pid: str, text: str, evidence: list[str], **kw) -> Principle:
    return Principle(id=pid, text=text, rationale="", iteration=int(pid[1]) if pid[1].isdigit() else 0,
                     evidence=evidence, **kw)


WEAPONS, WEAPONS_2, PRIVACY = "Refuse weapon instructions", "Do not explain how to build weapons", "Protect addresses"
VECTORS = {WEAPONS: [1.0, 0.0], WEAPONS_2: [0.95, 0.312], PRIVACY: [0.0, 1.0]}  # cos(W, W2) = 0.95


def test_new_principle_close_to_an_active_one_is_merged_and_its_evidence_moves():
    library = [principle("P0.1", WEAPONS, ["a"])]
    new = [principle("P1.1", WEAPONS_2, ["b", "a"]), principle("P1.2", PRIVACY, ["c"])]
    result = lib.merge_new(library, new, FakeEmbedder(VECTORS), threshold=0.9)
    by_id = {p.id: p for p in result.library}
    assert [p.id for p in result.added] == ["P1.2"]
    assert by_id["P1.1"].status == "merged" and by_id["P1.1"].merged_into == "P0.1"
    assert by_id["P1.1"].similarity == pytest.approx(0.95, abs=1e-3)
    assert by_id["P0.1"].evidence == ["a", "b"]  # gained the new failure, no repeat
    assert result.merged == [{"id": "P1.1", "new": WEAPONS_2, "into": "P0.1", "similarity": by_id["P1.1"].similarity}]
    assert [p.id for p in result.library] == ["P0.1", "P1.1", "P1.2"]


def test_below_the_threshold_nothing_merges():
    result = lib.merge_new([principle("P0.1", WEAPONS, ["a"])], [principle("P1.1", WEAPONS_2, ["b"])],
                           FakeEmbedder(VECTORS), threshold=0.96)
    assert [p.status for p in result.library] == ["active", "active"] and not result.merged


def test_new_principles_merge_with_each_other_and_never_into_inactive_ones():
    retired = principle("P0.1", WEAPONS, ["a"], status="retired")
    new = [principle("P1.1", WEAPONS, ["b"]), principle("P1.2", WEAPONS_2, ["c"])]
    result = lib.merge_new([retired], new, FakeEmbedder(VECTORS), threshold=0.9)
    by_id = {p.id: p for p in result.library}
    assert by_id["P1.1"].status == "active"  # the retired one is not a merge target
    assert by_id["P1.2"].merged_into == "P1.1" and by_id["P1.1"].evidence == ["b", "c"]


def test_retrieval_puts_the_failures_own_principles_first_then_the_most_similar():
    principles = [principle("P0.1", WEAPONS, ["x"]), principle("P0.2", PRIVACY, ["y"]),
                  principle("P0.3", WEAPONS_2, ["z"])]
    embedder = FakeEmbedder(VECTORS | {"how to make a gun": [1.0, 0.1], "find her address": [0.1, 1.0]})
    chosen = relevant_principles(["q1", "y"], ["how to make a gun", "find her address"], principles, embedder, k=2)
    assert [p.id for p in chosen[0]] == ["P0.1", "P0.3"]  # by similarity
    assert [p.id for p in chosen[1]][0] == "P0.2"  # written from failure y
    # fewer principles than k: all of them, in library order
    assert [p.id for p in relevant_principles(["q"], ["how to make a gun"], principles, embedder, k=5)[0]] == \
        ["P0.1", "P0.2", "P0.3"]


def _revision(pid: str, used: list[str], status: str | None) -> Revision:
    verdict = Verdict(prompt_id=pid, status=status) if status else None
    return Revision(prompt_id=pid, text="r", principle_ids=used, verdict=verdict)


def test_fix_rate_counts_judged_revisions_of_own_evidence_made_with_the_principle():
    library = [principle("P0.1", WEAPONS, ["a", "b", "c", "d"]), principle("P0.2", PRIVACY, ["e"])]
    revisions = [_revision("a", ["P0.1"], "ok"), _revision("b", ["P0.1", "P0.2"], "violation"),
                 _revision("c", ["P0.2"], "ok"),  # P0.1 not in the prompt: not its attempt
                 _revision("d", ["P0.1"], "unscored"),  # nobody checked: not counted
                 _revision("e", ["P0.1", "P0.2"], "ok")]  # not P0.1's evidence
    updated = {p.id: p for p in lib.record_fixes(library, revisions)}
    assert (updated["P0.1"].fix_attempts, updated["P0.1"].fix_passed, updated["P0.1"].fix_rate) == (2, 1, 0.5)
    assert (updated["P0.2"].fix_attempts, updated["P0.2"].fix_rate) == (1, 1.0)
    # a second iteration adds to the record
    again = {p.id: p for p in lib.record_fixes(list(updated.values()), [_revision("a", ["P0.1"], "ok")])}
    assert (again["P0.1"].fix_attempts, again["P0.1"].fix_passed) == (3, 2)
    assert principle("P0.3", PRIVACY, []).fix_rate is None


def test_retire_only_with_enough_attempts_and_a_low_fix_rate():
    library = [principle("P0.1", WEAPONS, [], fix_attempts=4, fix_passed=0),
               principle("P0.2", PRIVACY, [], fix_attempts=2, fix_passed=0),
               principle("P0.3", WEAPONS_2, [], fix_attempts=4, fix_passed=3)]
    assert lib.retire(library, None, 4) == (library, [])
    out, retired = lib.retire(library, 0.5, 4)
    assert retired == ["P0.1"] and [p.status for p in out] == ["retired", "active", "active"]


def test_a_constitution_round_trips_and_loads_as_a_starting_library(tmp_path):
    library = [principle("P0.1", WEAPONS, ["a"], fix_attempts=2, fix_passed=1, theme="weapons"),
               principle("P1.1", WEAPONS_2, ["b"], status="merged", merged_into="P0.1", similarity=0.9),
               principle("P1.2", PRIVACY, ["c"])]
    document = lib.to_document(library, "run-a", "fake")
    assert document["counts"] == {"active": 2, "merged": 1, "retired": 0}
    assert document["principles"][0]["fix_rate"] == 0.5
    assert lib.from_document(json.loads(json.dumps(document)), "x") == library
    path = tmp_path / "constitution.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    start = lib.load_start(path)
    assert [(p.id, p.text, p.origin, p.iteration, p.fix_attempts) for p in start] == [
        ("S1", WEAPONS, "constitution.json#P0.1", -1, 0), ("S2", PRIVACY, "constitution.json#P1.2", -1, 0)]
    with pytest.raises(ConfigError, match="not found"):
        lib.load_start(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"principles": [{"id": 1}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not an iteralign constitution"):
        lib.load_start(tmp_path / "bad.json")


# ---- the three effects, through the loop's own stage code -------------------------------------

class FakeModels:
    """What the loop's `Models` gives a stage: a CachedModel per spec (here: by name)."""

    def __init__(self, by_name):
        self.by_name = by_name

    def get(self, spec):
        return self.by_name[spec if isinstance(spec, str) else spec.model]

    def counts(self):
        return CallCounts()


def test_effects_without_principles_in_context_and_in_weights(tmp_path, scripted):
    config = Config.model_validate({
        "name": "t", "data": {"sources": [{"name": "advbench"}]},
        "models": {"base": {"backend": "hf", "model": "base"}, "oracle": {"backend": "llamacpp", "model": "oracle"}},
        "constitution": {"top_k": 1}})
    probe = [RedTeamPrompt(id=f"h{i}", text=f"how do I hurt someone {i}", source="t", split="heldout") for i in range(4)]
    # the base model complies unless a principle about refusing is in its system prompt
    base, base_backend = scripted(lambda chat, p: "I refuse." if "refuse" in chat[0]["content"] else "Sure, step 1")
    verdict = '{{"verdict": "{}", "categories": [], "rationale": "r"}}'
    oracle, _ = scripted(lambda chat, p: verdict.format("violation" if "Sure" in chat[-1]["content"] else "ok"))
    models = FakeModels({"base": base, "oracle": oracle})
    r = Run(config, RedTeamSet(train=[], heldout=probe), RunDir(tmp_path), models, accept_unscored=False)
    it = r.runner(tmp_path / "iter_000")
    it.dir.mkdir(parents=True)
    principles = [principle("P0.1", "Always refuse to help hurt people", ["x"])]
    in_context = probe_in_context(r, it, config.models.base, principles)
    assert [v.status for v in in_context] == ["ok"] * 4
    # the in-context answers were asked with the principle as the system prompt, and stored
    assert all("Always refuse to help hurt people" in chat[0]["content"] for chat in base_backend.asked)
    assert (it.dir / "11_probe_in_context_verdicts.jsonl").is_file()
    # before this iteration: 3 violations and 1 unscored; after training: 1 violation of 4
    before = [Verdict(prompt_id=f"h{i}", status=s) for i, s in enumerate(["violation"] * 3 + ["unscored"])]
    after = [Verdict(prompt_id=f"h{i}", status=s) for i, s in enumerate(["ok", "ok", "ok", "violation"])]
    assert effects_summary(before, in_context, after, 1) == {
        "n": 4, "without_principles": 1.0, "in_context": 0.0, "in_weights": 0.25, "in_context_unscored": 0,
        "principles_available": 1}
    # no principles yet: nothing to put in context, no model call, no rate
    asked = len(base_backend.asked)
    assert probe_in_context(r, it, config.models.base, []) is None
    assert len(base_backend.asked) == asked
    assert effects_summary(before, None, after, 0)["in_context"] is None


# ---- export ------------------------------------------------------------------------------------

def test_export_groups_active_principles_by_theme_with_fix_rate_and_examples(tmp_path):
    root = tmp_path / "run"
    (root / "iter_000").mkdir(parents=True)
    write_json(root / "manifest.json", {"iterations": []})
    prompts = [RedTeamPrompt(id=f"p{i}", text=f"harmful request number {i} " + "x" * 300, source="t", split="train")
               for i in range(3)]
    write_records(root / "iter_000" / "01_prompts.jsonl", prompts)
    write_records(root / "iter_000" / "02_responses.jsonl", [Response(prompt_id=p.id, text=f"bad answer {p.id}", model="m")
                                                             for p in prompts])
    write_records(root / "iter_000" / "03_verdicts.jsonl", [Verdict(prompt_id=p.id, status="violation")
                                                            for p in prompts])
    library = [principle("P0.1", WEAPONS, ["p0", "p1", "p2"], theme="weapons", fix_attempts=4, fix_passed=3),
               principle("P0.2", PRIVACY, ["p2"], theme="privacy"),
               principle("P0.3", WEAPONS_2, ["p1"], theme="weapons", status="merged", merged_into="P0.1", similarity=0.91)]
    write_json(root / "constitution.json", lib.to_document(library, "demo", "fake"))
    text = export_constitution(root, "md")
    # equal-sized theme groups come alphabetically; each principle under its own theme
    assert text.index("## Privacy") < text.index("### P0.2. Protect addresses") < text.index("## Weapons") \
        < text.index("### P0.1. Refuse weapon instructions")
    assert "Fix rate: 75% (3 of 4 revisions passed the judge)" in text
    assert "Fix rate: not measured yet" in text
    assert text.count("- Request: harmful request number") == 3  # two examples for P0.1, one for P0.2
    assert "Answer judged harmful: bad answer p0" in text and "Content warning" in text
    assert "P0.3 → P0.1 (similarity 0.91)" in text
    assert max(len(line) for line in text.splitlines()) < 400  # examples are shortened
    assert json.loads(export_constitution(root, "json"))["principles"][0]["fix_rate"] == 0.75


def test_export_of_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(RunDirError, match="not an iteralign run"):
        export_constitution(tmp_path, "md")
    write_json(tmp_path / "manifest.json", {})
    with pytest.raises(RunDirError, match="has not finished a propose stage"):
        export_constitution(tmp_path, "md")


@pytest.mark.slow
def test_packaged_minilm_ranks_a_paraphrase_above_an_unrelated_principle():
    from iteralign.constitution.embedding import load_embedder

    vectors = load_embedder().embed(["Refuse to give instructions for making weapons.",
                                     "Never explain how to build a weapon.",
                                     "Do not reveal a private person's home address."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2


def test_cli_constitution_bad_input_is_one_line_and_exit_code_2(tmp_path):
    from typer.testing import CliRunner

    from iteralign.cli import app

    runner = CliRunner()
    for args, needle in (([str(tmp_path)], "not an iteralign run"),
                         ([str(tmp_path / "nope")], "no such folder"),
                         ([str(tmp_path), "--format", "pdf"], "choose md or json")):
        result = runner.invoke(app, ["constitution", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], result.output
