"""Generation benchmarks judged by the oracle, with scripted model and oracle on the real data
files: metrics count only graded answers, unscored answers are reported, classes map right."""
import json

from iteralign.config import GenerationConfig, JudgeConfig
from iteralign.evaluate.judged import advbench, parse_truthfulqa_grade, truthfulqa_gen, xstest
from iteralign.judging.xstest_class import parse_xstest_class

GEN, JUDGE = GenerationConfig(max_new_tokens=16), JudgeConfig(max_attempts=2)


def test_parsers():
    assert parse_xstest_class('{"class": "partial_refusal", "rationale": "x"}') == "partial_refusal"
    assert parse_xstest_class('{"class": "refuse"}') is None
    assert parse_truthfulqa_grade('{"truthful": "yes", "informative": "no"}') == (True, False)
    assert parse_truthfulqa_grade('{"truthful": "maybe", "informative": "no"}') is None


def test_xstest_over_refusal_and_unsafe_compliance(scripted, data_dir):
    model, _ = scripted(lambda chat, p: "ANSWER:" + chat[-1]["content"])

    def oracle_reply(chat, params):
        prompt = chat[-1]["content"]
        # refuse everything about killing, answer everything else; garble one class of prompt
        if "Python" in prompt:
            return "not json"
        if "kill" in prompt.lower():
            return json.dumps({"class": "full_refusal", "rationale": "r"})
        return json.dumps({"class": "full_compliance", "rationale": "r"})

    oracle, _ = scripted(oracle_reply, spec_id="oracle")
    result = xstest(model, oracle, data_dir, None, GEN, JUDGE, seed=0)
    assert result.n == 450
    examples = [e for e in result.examples if e.details["class"]]
    safe = [e for e in examples if e.details["label"] == "safe"]
    unsafe = [e for e in examples if e.details["label"] == "unsafe"]
    assert result.metrics["safe_refused"].n == len(safe)
    assert result.metrics["safe_refused"].value == sum(e.details["class"] != "full_compliance" for e in safe) / len(safe)
    assert result.metrics["unsafe_complied"].value == sum(e.details["class"] == "full_compliance" for e in unsafe) / len(unsafe)
    unscored = [e for e in result.examples if e.details["class"] is None]
    assert unscored and all(e.correct is None for e in unscored)
    assert result.metrics["unscored"].value == len(unscored)
    assert len(safe) + len(unsafe) + len(unscored) == 450


def test_truthfulqa_gen_counts_truthful_informative_and_both(scripted, data_dir):
    model, _ = scripted(lambda chat, p: "I have no comment.")
    grades = iter([{"truthful": "yes", "informative": "no"}, {"truthful": "yes", "informative": "yes"},
                   {"truthful": "no", "informative": "yes"}])
    oracle, _ = scripted(lambda chat, p: json.dumps(next(grades, {"truthful": "?"})), spec_id="oracle")
    result = truthfulqa_gen(model, oracle, data_dir, 4, GEN, JudgeConfig(max_attempts=1), seed=0)
    m = result.metrics
    assert (m["truthful"].value, m["informative"].value) == (2 / 3, 2 / 3)
    assert m["truthful_and_informative"].value == 1 / 3 and m["truthful"].n == 3
    assert m["unscored"].value == 1 and result.examples[3].details["status"] == "unscored"


def test_advbench_complied_is_the_violation_rate(scripted, data_dir):
    model, _ = scripted(lambda chat, p: "Sure, here is how")
    verdicts = iter(["violation", "ok", "violation", "violation"])
    oracle, _ = scripted(lambda chat, p: json.dumps({"verdict": next(verdicts), "categories": [], "rationale": ""}),
                         spec_id="oracle")
    result = advbench(model, oracle, data_dir, 4, GEN, JudgeConfig(max_attempts=1), seed=0)
    assert result.metrics["complied"].value == 0.75 and result.metrics["complied"].n == 4
    assert result.examples[0].question.startswith("Write a script that can exploit vulnerabilities")
