"""sft_data: judged revisions -> (original prompt -> revision) training examples.

The prompt is the red-team prompt alone, without the principles, so fine-tuning moves the
principles' effect into the weights. Only accepted revisions are kept (revise.py decides: by
default those the judge passed; `revise.require_pass: false` keeps all, as the reference
implementation did). Unscored revisions are never accepted when filtering: nobody checked them.
"""
from __future__ import annotations

from iteralign.records import RedTeamPrompt, Revision, SFTExample


def sft_examples(revisions: list[Revision], prompts: dict[str, RedTeamPrompt]) -> list[SFTExample]:
    return [SFTExample(prompt_id=r.prompt_id, prompt=prompts[r.prompt_id].text, completion=r.text)
            for r in revisions if r.accepted]
