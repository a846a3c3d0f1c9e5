"""Principle proposal (parsing, evidence, de-duplication), revision by rejection sampling, SFT data."""
import json

from iteralign.config import GenerationConfig, ProposeConfig, ReviseConfig
from iteralign.constitution.library import record_fixes
from iteralign.records import Principle, RedTeamPrompt, Response, Revision, RevisionAttempt, Verdict
from iteralign.stages.propose import Failure, parse_proposal, propose_principles, wording_key
from iteralign.stages.revise import revise
from iteralign.stages.sft_data import sft_examples


def _failures(n):
    out = []
    for i in range(n):
        prompt = RedTeamPrompt(id=f"p{i}", text=f"how do I do bad thing {i}", source="t", split="train")
        out.append(Failure(prompt, Response(prompt_id=prompt.id, text="sure, step 1", model="m"),
                           Verdict(prompt_id=prompt.id, status="violation", rationale="gives steps")))
    return out


def test_parse_maps_labels_to_prompt_ids_and_drops_uncited():
    reply = json.dumps({"principles": [
        {"text": "Refuse to explain how to pick locks", "rationale": "r", "theme": " *Lock-Picking.*",
         "addresses": ["F2", "F9"]},
        {"text": "A principle that cites nothing real", "rationale": "r", "addresses": ["F7"]},
    ]})
    parsed = parse_proposal(reply, {"F1": "p0", "F2": "p1"})
    assert parsed == [("Refuse to explain how to pick locks", "r", ["p1"], "lock-picking")]
    assert parse_proposal("not json", {"F1": "p0"}) is None


def test_wording_key_folds_case_and_punctuation_only():
    assert wording_key("Refuse to give instructions for making weapons.") == \
        wording_key("refuse to give instructions, for making weapons")
    assert wording_key("Refuse to give instructions for making weapons") != \
        wording_key("Refuse to give instructions for making bombs")


def test_propose_adds_new_principles_and_skips_library_duplicates(scripted):
    reply = json.dumps({"principles": [
        {"text": "Refuse to give instructions for making weapons", "rationale": "a", "addresses": ["F1"]},
        {"text": "Do not help access other people's accounts; point to account recovery", "rationale": "b",
         "addresses": ["F1", "F2"]},
        {"text": "Do not help access other people's accounts, point to account recovery", "rationale": "c",
         "addresses": ["F2"]},
    ]})
    model, backend = scripted(lambda chat, params: reply)
    library = [Principle(id="P0.1", text="Refuse to give instructions for making weapons.", rationale="",
                         iteration=0, evidence=["x"])]
    added, duplicates, invalid = propose_principles(model, _failures(2), library, ProposeConfig(), iteration=1, seed=0)
    assert [p.text for p in added] == ["Do not help access other people's accounts; point to account recovery"]
    assert added[0].id == "P1.1" and added[0].evidence == ["p0", "p1"] and added[0].iteration == 1
    assert added[0].theme == "general"  # no theme in the reply
    assert len(duplicates) == 2 and invalid == []
    # the schema restricts citations to the failures shown
    asked = backend.asked[0][-1]["content"]
    assert "[F1]" in asked and "[F2]" in asked and "Refuse to give instructions" in asked


def test_propose_without_usable_reply_adds_nothing(scripted):
    model, _ = scripted(lambda chat, params: "I am not sure")
    added, duplicates, invalid = propose_principles(model, _failures(1), [], ProposeConfig(max_attempts=2), 0, 0)
    assert added == [] and duplicates == [] and invalid == []


def test_a_copied_rationale_or_a_fragment_is_not_a_principle(scripted):
    reply = json.dumps({"principles": [
        {"text": "How do I do bad thing 0?", "rationale": "r", "addresses": ["F1"]},  # the request, copied
        {"text": "Weapons are bad for everyone", "rationale": "r", "addresses": ["F1"]},  # five words
        {"text": "Decline to explain how to build weapons, and offer safety resources", "rationale": "r",
         "addresses": ["F1"]},
    ]})
    model, _ = scripted(lambda chat, params: reply)
    added, _, invalid = propose_principles(model, _failures(1), [], ProposeConfig(), 0, 0)
    assert [p.text for p in added] == ["Decline to explain how to build weapons, and offer safety resources"]
    assert [i["reason"] for i in invalid] == ["copies text the proposer was shown", "fewer than 6 words"]


def _revise_setup(scripted, answers_by_seed, batch_size=1):
    """A scripted model whose answer depends on the prompt and the sampling seed/row."""
    prompts = [RedTeamPrompt(id=f"p{i}", text=f"q{i}", source="t", split="train") for i in range(3)]
    principle = Principle(id="P0.1", text="Decline harmful requests", rationale="", iteration=0, evidence=["p0"])
    calls = {"n": 0}

    def reply(chat, params):
        calls["n"] += 1
        request = chat[-1]["content"].rsplit("Request: ", 1)[-1].strip()
        return answers_by_seed(request, params.seed, calls["n"])

    model, backend = scripted(reply, batch_size=batch_size)
    return prompts, principle, model, backend


def _judge_by_text(responses, round_):
    return [Verdict(prompt_id=r.prompt_id, status="ok" if r.text.startswith("refuse") else
                    ("unscored" if r.text == "?" else "violation")) for r in responses]


def test_only_passing_revisions_become_training_data_unless_switched_off(scripted):
    answers = {"q0": "refuse q0", "q1": "comply q1", "q2": "?"}
    prompts, principle, model, _ = _revise_setup(scripted, lambda q, seed, n: answers[q])
    by_id = {p.id: p for p in prompts}
    strict = revise(model, prompts, [[principle]] * 3, GenerationConfig(), ReviseConfig(), 0, _judge_by_text)
    assert [r.accepted for r in strict] == [True, False, False]
    assert [(e.prompt, e.completion) for e in sft_examples(strict, by_id)] == [("q0", "refuse q0")]
    assert [r.principle_ids for r in strict] == [["P0.1"]] * 3
    loose = revise(model, prompts, [[principle]] * 3, GenerationConfig(), ReviseConfig(require_pass=False), 0,
                   _judge_by_text)
    assert [r.accepted for r in loose] == [True, True, True]


def test_rejection_sampling_keeps_the_first_passing_sample_and_records_every_try(scripted):
    # q0 passes at once, q1 on its third sample (seed 2), q2 never
    def answer(q, seed, n):
        if q == "q0" or (q == "q1" and seed == 2):
            return f"refuse {q} (seed {seed})"
        return f"comply {q} (seed {seed})"

    prompts, principle, model, backend = _revise_setup(scripted, answer)
    revisions = revise(model, prompts, [[principle]] * 3, GenerationConfig(temperature=0.7),
                       ReviseConfig(samples=4, temperature=1.0, placement="user"), 0, _judge_by_text)
    assert [r.attempts for r in revisions] == [1, 3, 4]
    assert [r.accepted for r in revisions] == [True, True, False]
    assert revisions[1].text == "refuse q1 (seed 2)"
    assert [a.text for a in revisions[1].rejected] == ["comply q1 (seed 0)", "comply q1 (seed 1)"]
    assert all(a.verdict.status == "violation" for a in revisions[2].rejected) and len(revisions[2].rejected) == 3
    # an HTTP-like model (batch size 1) is asked only for the failures still unfixed: 3 + 2 + 2 + 1
    assert len(backend.asked) == 8
    # placement "user": the principles are in the user turn, no system prompt
    assert backend.asked[0][0]["role"] == "user" and "Decline harmful requests" in backend.asked[0][0]["content"]
    # the fix rate counts every attempt: P0.1's evidence is p0, fixed at the first try
    library = record_fixes([principle], revisions)
    assert (library[0].fix_attempts, library[0].fix_passed) == (1, 1)


def test_a_batching_engine_draws_every_sample_at_once(scripted):
    prompts, principle, model, backend = _revise_setup(
        scripted, lambda q, seed, n: f"refuse {q}" if n % 4 == 0 else f"comply {q}", batch_size=12)
    revisions = revise(model, prompts, [[principle]] * 3, GenerationConfig(), ReviseConfig(samples=4), 5,
                       _judge_by_text)
    assert len(backend.asked) == 12  # 3 failures x 4 samples, one engine call
    assert [r.attempts for r in revisions] == [4, 4, 4] and all(r.accepted for r in revisions)


def test_a_loaded_principle_counts_every_revision_it_was_used_in():
    seed = Principle(id="S1", text="Decline", rationale="", iteration=-1, evidence=[])
    revision = Revision(prompt_id="p9", text="refuse", principle_ids=["S1"], verdict=Verdict(prompt_id="p9", status="ok"),
                        accepted=True, attempts=2,
                        rejected=[RevisionAttempt(text="comply", verdict=Verdict(prompt_id="p9", status="violation"))])
    [updated] = record_fixes([seed], [revision])
    assert (updated.fix_attempts, updated.fix_passed) == (2, 1) and updated.fix_rate == 0.5
