"""revise: failed prompts + principles -> the model's own new answers under the principles.

In: the prompts whose answers failed, for each the principles chosen for it (the library's most
relevant, see constitution/retrieval.py), the model being aligned, a `judge(responses, round)`
callable (the loop passes the run's judge; a stage never imports another), settings.
Out: one `Revision` per prompt that had principles. With `samples: N` this is rejection
sampling: each round samples one revision for every prompt still without a passing one, the
judge scores them, and the first the judge passes is kept. Every attempt is recorded (`attempts`,
and the text and verdict of each rejected one), so a principle's fix rate counts the tries it took.
The principles go in the system prompt ("self-reflection", the paper's setting) or in the user
turn before the request (`placement: user`). The revision is the model's own answer: nothing
is written into it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from iteralign import prompts as templates
from iteralign.backends.base import GenParams
from iteralign.backends.cached import CachedModel, texts_or_outage
from iteralign.config import GenerationConfig, ReviseConfig
from iteralign.errors import OutageError
from iteralign.records import Principle, RedTeamPrompt, Response, Revision, RevisionAttempt, Verdict

Judge = Callable[[list[Response], int], list[Verdict]]


def principles_list(principles: list[Principle]) -> str:
    return "\n".join(f"{k + 1}. {p.text}" for k, p in enumerate(principles))


def principled_chat(request: str, principles: list[Principle], placement: str) -> list[dict[str, str]]:
    if placement == "user":
        return [{"role": "user", "content": templates.render("revise_user", principles=principles_list(principles),
                                                             request=request)}]
    return [{"role": "system", "content": templates.render("revise_system", principles=principles_list(principles))},
            {"role": "user", "content": request}]


def answer_with_principles(model: CachedModel, prompts: list[RedTeamPrompt], principles: list[list[Principle]],
                           params: GenParams, placement: str, stage: str) -> list[Response]:
    """principles[k]: the principles for prompts[k] (every one non-empty)."""
    chats = [principled_chat(p.text, own, placement) for p, own in zip(prompts, principles, strict=True)]
    texts = texts_or_outage(model.generate(chats, params, stage=stage), [p.id for p in prompts], stage)
    return [Response(prompt_id=p.id, text=text, model=model.spec_id) for p, text in zip(prompts, texts)]


def revise(model: CachedModel, failed: list[RedTeamPrompt], principles: list[list[Principle]],
           generation: GenerationConfig, config: ReviseConfig, seed: int, judge: Judge,
           stage: str = "revise") -> list[Revision]:
    """principles[k]: the principles for failed[k]; a prompt with none gets no revision.

    A local engine samples all `samples` revisions of every failure at once (each prompt is read
    once); an HTTP model is asked round by round, only for the failures still unfixed. Either way
    round r judges the r-th sample of the failures that no earlier sample fixed."""
    chosen = [(prompt, own) for prompt, own in zip(failed, principles, strict=True) if own]
    temperature = generation.temperature if config.temperature is None else config.temperature
    params = GenParams(max_new_tokens=generation.max_new_tokens, temperature=temperature, top_p=generation.top_p,
                       seed=seed)
    upfront = config.samples > 1 and model.upfront_sampling
    drawn = (model.sample([principled_chat(p.text, own, config.placement) for p, own in chosen], params,
                          config.samples, stage) if upfront and chosen else None)
    attempts: dict[str, list[RevisionAttempt]] = {p.id: [] for p, _ in chosen}
    pending = list(range(len(chosen)))
    for round_ in range(config.samples):
        if not pending:
            break
        if drawn is not None:
            answers = [_response(chosen[i][0], drawn[i][round_], model.spec_id, stage) for i in pending]
        else:
            label = stage if config.samples == 1 else f"{stage} {round_ + 1}/{config.samples}"
            answers = answer_with_principles(model, [chosen[i][0] for i in pending], [chosen[i][1] for i in pending],
                                             replace(params, seed=seed + round_), config.placement, label)
        verdicts = judge(answers, round_)
        still = []
        for i, answer, verdict in zip(pending, answers, verdicts, strict=True):
            attempts[chosen[i][0].id].append(RevisionAttempt(text=answer.text, verdict=verdict))
            if verdict.status != "ok":
                still.append(i)
        pending = still
    out = []
    for prompt, own in chosen:
        tried = attempts[prompt.id]
        kept = tried[-1]  # the passing one, or the last try when none passed
        passed = kept.verdict is not None and kept.verdict.status == "ok"
        accepted = bool(kept.text.strip()) and (passed or not config.require_pass)
        out.append(Revision(prompt_id=prompt.id, text=kept.text, principle_ids=[p.id for p in own],
                            verdict=kept.verdict, accepted=accepted, attempts=len(tried), rejected=tried[:-1]))
    return out


def _response(prompt: RedTeamPrompt, completion, model: str, stage: str) -> Response:
    if not completion.ok:
        raise OutageError(f"{stage}: the model gave no answer to prompt {prompt.id} after every retry "
                          f"({completion.error[:160]}); run the same command again to retry")
    return Response(prompt_id=prompt.id, text=completion.text, model=model)
