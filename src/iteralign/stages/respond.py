"""respond: red-team prompts -> the current model's answers.

In: prompts, a `CachedModel` for the model being aligned, generation settings, a seed.
Out: one `Response` per prompt, in prompt order. A prompt the model could not answer (only an
HTTP base model can fail this way) raises `OutageError`: without an answer there is nothing to
align, and a re-run asks again.
"""
from __future__ import annotations

from iteralign.backends.base import GenParams
from iteralign.backends.cached import CachedModel, texts_or_outage
from iteralign.config import GenerationConfig
from iteralign.records import RedTeamPrompt, Response


def generation_params(generation: GenerationConfig, seed: int) -> GenParams:
    return GenParams(max_new_tokens=generation.max_new_tokens, temperature=generation.temperature,
                     top_p=generation.top_p, seed=seed)


def respond(model: CachedModel, prompts: list[RedTeamPrompt], generation: GenerationConfig, seed: int,
            stage: str = "respond", system: str | list[str] | None = None) -> list[Response]:
    """`system`: one system prompt for all, or one per prompt (revision: each failure's own principles)."""
    systems = system if isinstance(system, list) else [system] * len(prompts)
    chats = []
    for prompt, own_system in zip(prompts, systems, strict=True):
        chat = [{"role": "system", "content": own_system}] if own_system else []
        chats.append(chat + [{"role": "user", "content": prompt.text}])
    texts = texts_or_outage(model.generate(chats, generation_params(generation, seed), stage=stage),
                            [p.id for p in prompts], stage)
    return [Response(prompt_id=p.id, text=text, model=model.spec_id) for p, text in zip(prompts, texts)]
