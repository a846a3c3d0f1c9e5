"""sft_data: judged revisions -> (original prompt -> revision) training examples, and DPO pairs.

The prompt is the red-team prompt alone, without the principles, so fine-tuning moves the
principles' effect into the weights. Only accepted revisions are kept (revise.py decides: by
default those the judge passed; `revise.require_pass: false` keeps all, as the reference
implementation did). Unscored revisions are never accepted when filtering: nobody checked them.
A DPO pair is the same accepted revision (chosen) against the model's own answer that the judge
flagged (rejected), for the same prompt.
"""
from __future__ import annotations

from iteralign.records import PreferencePair, RedTeamPrompt, Response, Revision, SFTExample


def sft_examples(revisions: list[Revision], prompts: dict[str, RedTeamPrompt]) -> list[SFTExample]:
    return [SFTExample(prompt_id=r.prompt_id, prompt=prompts[r.prompt_id].text, completion=r.text)
            for r in revisions if r.accepted]


def preference_pairs(revisions: list[Revision], prompts: dict[str, RedTeamPrompt],
                     answers: list[Response]) -> list[PreferencePair]:
    original = {a.prompt_id: a.text for a in answers}
    return [PreferencePair(prompt_id=r.prompt_id, prompt=prompts[r.prompt_id].text, chosen=r.text,
                           rejected=original[r.prompt_id])
            for r in revisions if r.accepted and original.get(r.prompt_id, r.text) != r.text]
