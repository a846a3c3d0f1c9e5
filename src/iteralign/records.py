"""The nouns of the data flow: one record type per arrow (DESIGN.md section 2).

Every stage reads and writes lists of these; the run directory stores them as JSON Lines, one
record per line, so a person can read every intermediate result.
"""
from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

VerdictStatus = Literal["ok", "violation", "unscored"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedTeamPrompt(Record):
    id: str
    text: str
    source: str
    split: Literal["train", "heldout"]


class Response(Record):
    prompt_id: str
    text: str
    model: str  # the model spec that produced it, e.g. "hf:embedded+adapter:iter_000"

    @property
    def id(self) -> str:
        return self.prompt_id


class Verdict(Record):
    # the prompt whose answer this judges ("response_id" in runs written before 0.2)
    prompt_id: str = Field(validation_alias=AliasChoices("prompt_id", "response_id"))
    status: VerdictStatus
    categories: list[str] = Field(default_factory=list)
    rationale: str = ""
    attempts: int = 1  # judge calls it took; an unscored verdict used them all
    error: str = ""  # why it is unscored (transport error, unparseable reply)
    # unscored because no reply came at all (HTTP error, timeout): a re-run asks again
    transport_failed: bool = False
    # the reference judge's status of the same answer (judge.reference), and why
    reference_status: VerdictStatus | None = None
    reference_rationale: str = ""


class Principle(Record):
    id: str
    text: str
    rationale: str
    iteration: int  # the iteration it was born in (-1: loaded from a starting constitution)
    evidence: list[str]  # ids of the failures (prompt ids) it was written from, or merged into it
    theme: str = "general"  # a short topic label from the oracle, for grouping the document
    # active: used; merged: a near-duplicate of `merged_into`, kept for provenance; retired: its
    # revisions kept failing the judge (constitution.retire_*), no longer used
    status: Literal["active", "merged", "retired"] = "active"
    merged_into: str | None = None
    similarity: float | None = None  # to `merged_into`, when merged
    # revisions of its evidence failures made with it in the prompt, and how many the judge passed
    fix_attempts: int = 0
    fix_passed: int = 0
    origin: str | None = None  # where a loaded principle came from: "<constitution.json>#<its id there>"

    @property
    def fix_rate(self) -> float | None:
        return self.fix_passed / self.fix_attempts if self.fix_attempts else None


class RevisionAttempt(Record):
    """One sampled revision that the judge did not pass (rejection sampling keeps trying)."""

    text: str
    verdict: Verdict | None = None


class Revision(Record):
    prompt_id: str
    text: str
    principle_ids: list[str]
    verdict: Verdict | None = None  # the re-judgement, when revisions are judged
    accepted: bool = False  # becomes SFT data
    attempts: int = 1  # revisions sampled and judged for this failure, the kept one included
    rejected: list[RevisionAttempt] = Field(default_factory=list)  # the earlier tries, in order

    def judged(self) -> list[Verdict]:
        """Every attempt's verdict, in order (the kept revision's last)."""
        return [a.verdict for a in self.rejected if a.verdict is not None] + ([self.verdict] if self.verdict else [])


class SFTExample(Record):
    prompt_id: str
    prompt: str  # the original red-team prompt, no principles
    completion: str


class PreferencePair(Record):
    """One DPO pair from a revision: the prompt, the accepted revision, the answer the judge flagged."""

    prompt_id: str
    prompt: str  # the original red-team prompt, no principles
    chosen: str
    rejected: str


class StageStats(Record):
    seconds: float
    calls_made: int
    calls_cached: int
    calls_failed: int = 0
    calls_retried: int = 0  # asked again after failing in an earlier run (a re-run after an outage)
    transport_failed: int = 0  # answers left unscored because the judge never replied


class IterationSummary(Record):
    iteration: int
    model: str  # the spec that answered this iteration's prompts
    adapter_in: str | None  # adapter the iteration generated with (None: the plain base)
    adapter_in_sha256: str | None
    adapter_out: str | None  # adapter trained by this iteration
    prompts: int
    answers: dict[str, float | int | None]  # ok / violation / unscored / violation_rate
    revisions: dict[str, float | int | None]
    probe: dict[str, float | int | None]
    # probe answers that differ from the model before this iteration's training (the baseline for
    # iteration 0): same prompts, same seeds, so a difference is the adapter's doing
    probe_answers_changed: int
    principles_added: list[str]
    sft_examples: int
    train_loss: float | None
    # 07_train.json without the adapter hash: objective, and for DPO its beta, loss type, reference, rewards
    training: dict = Field(default_factory=dict)
    stages: dict[str, StageStats]
    stop_reason: str | None = None
    principles_merged: list[str] = Field(default_factory=list)  # new ones merged into existing ones
    principles_retired: list[str] = Field(default_factory=list)
    # held-out probe violation rates of the constitution at the end of this iteration: the model
    # before this iteration's training without principles, the same model with its top-k principles
    # in the prompt (in-context effect), the trained model without them (in-weights effect)
    effects: dict[str, float | int | None] | None = None
    # calls that had failed in an earlier run of this command and were asked again (after an outage)
    calls_retried: int = 0
