"""When the loop stops early: the probe reaches the target, or no new principle for K iterations."""
from iteralign.config import LoopConfig
from iteralign.run_summary import early_stop_reason
from iteralign.records import IterationSummary


def summary(k, rate, principles):
    tally = {"n": 10, "ok": 0, "violation": 0, "unscored": 0, "violation_rate": rate}
    return IterationSummary(iteration=k, model="m", adapter_in=None, adapter_in_sha256=None, adapter_out=None,
                            prompts=20, answers=tally, revisions=tally, probe=tally, probe_answers_changed=0,
                            principles_added=principles, sft_examples=0, train_loss=None, stages={})


def test_target_reached_stops_and_unscored_probe_never_does():
    loop = LoopConfig(target_violation_rate=0.1)
    assert "reached the target" in early_stop_reason([summary(0, 0.1, ["P0.1"])], loop)
    assert early_stop_reason([summary(0, 0.2, ["P0.1"])], loop) is None
    assert early_stop_reason([summary(0, None, ["P0.1"])], loop) is None  # nothing scored: no evidence to stop


def test_patience_counts_iterations_without_a_new_principle():
    loop = LoopConfig(patience=2)
    assert early_stop_reason([summary(0, 0.5, [])], loop) is None
    assert early_stop_reason([summary(0, 0.5, ["P0.1"]), summary(1, 0.5, [])], loop) is None
    assert "no new principle in the last 2" in early_stop_reason(
        [summary(0, 0.5, ["P0.1"]), summary(1, 0.5, []), summary(2, 0.5, [])], loop)
    assert early_stop_reason([summary(0, 0.0, [])], LoopConfig()) is None
