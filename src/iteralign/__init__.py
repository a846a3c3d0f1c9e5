"""iteralign: align a language model the IterAlign way.

    from iteralign import evaluate, load_config, run
    result = run(load_config("configs/demo.yaml"))
    scores = evaluate(result_spec, ["hhh", "truthfulqa_mc1"], data_dir="../shared/datasets")
"""
from iteralign.config import Config
from iteralign.config_loading import load_config
from iteralign.evaluate.runner import evaluate
from iteralign.loop import RunResult, run
from iteralign.records import (IterationSummary, Principle, RedTeamPrompt, Response, Revision, SFTExample,
                               Verdict)

__all__ = ["Config", "load_config", "run", "evaluate", "RunResult", "IterationSummary", "Principle", "RedTeamPrompt",
           "Response", "Revision", "SFTExample", "Verdict"]
__version__ = "0.1.0"
