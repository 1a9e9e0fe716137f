"""PS-Boosting: a professor made of K teachers fine-tuned in sequence, BoostingBERT-style.

Each round fine-tunes a fresh copy of the base checkpoint on the training set under sample
weights that earlier rounds raised on the examples they got wrong (multi-class SAMME, Zhu et
al. 2009). With K classes, n examples and weights w (Σ w = 1, uniform at first):

    err_m   = Σ_i w_i · [y_i ≠ f_m(x_i)]                     weighted training error of member m
    α_m     = ν · ( log((1 − err_m) / err_m) + log(K − 1) )   its vote; ν = shrinkage
    w_i     ← w_i · exp(α_m · [y_i ≠ f_m(x_i)]),  then renormalised to Σ w = 1

A member with err_m ≥ 1 − 1/K (α_m ≤ 0) is no better than chance and ends the boosting; so
does a *degenerate* member, one that answers a single class for every training or every eval
example — under skewed weights a constant answer can score err_m < 1 − 1/K (MRPC round 2
answering "paraphrase" everywhere scored 0.37) while it carries no information. Either kind is
first fine-tuned again with the next seed (`retries`). A member with no training errors (err_m
clipped to half an example, 0.5 / n) gets a large but finite α_m and ends the boosting too, as
there is nothing left to reweight.

The professor's logits are the members' logits weighted by their votes (`combine="logits"`):

    logits (B, C) = Σ_m  (α_m / Σ α) · logits_m (B, C)

Softmax ignores a per-row constant, so this is the same distribution as weighting the members'
log-probabilities; the normalisation keeps the logits on one member's scale, so a distillation
temperature means the same as for a single teacher. A member with much larger logits than the
others outvotes its α this way; `combine="probabilities"` mixes the members' distributions
instead, logits = log Σ_m (α_m / Σ α) · softmax(logits_m), where no member counts for more
than its vote.

The artifact is a directory every `--teacher` flag accepts (see slimbert.teachers):

    professor/
      ensemble.json     format, member dirs, α and normalised weights, best member, labels
      slimbert.json     role "professor", method "boost", eval figures, every round's record
      tokenizer files   shared by all members
      member-0/ ...     each an ordinary HF classifier directory (config, safetensors,
                        slimbert.json)

Samples weights reach a member in one of three ways (`weighting`): "loss" multiplies each
example's cross-entropy by n · w_i (mean 1, so uniform weights equal plain fine-tuning);
"resample" draws each epoch's examples with replacement in proportion to w (Freund & Schapire's
boosting by resampling), which keeps the gradient scale of plain fine-tuning; "bag" draws one
bag of n rows in proportion to w for the member's whole fine-tune, and scores the member on the
rows left out of it (about a third at uniform weights):

    err_m   = Σ_{i ∉ bag} w_i · [y_i ≠ f_m(x_i)]  /  Σ_{i ∉ bag} w_i      out-of-bag error

A fine-tuned transformer nearly memorises the rows it trained on, so with "loss" or "resample"
err_m is close to 0 for any member and α_m mostly measures memorisation: on MRPC two members at
68% dev accuracy got larger votes (3.07, 3.21) than the 80.6% teacher they joined (2.19). The
out-of-bag error is what the member gets wrong on rows it never saw, the quantity SAMME's vote
is meant to weigh. Every row's weight is still updated from the member's answer on it, so the
out-of-bag misses are the ones raised most. A `first_member` trained on every row has no
out-of-bag rows, so "bag" trains round 1 too.

A round's member is fine-tuned, scored and retried in teachers/boost_members.py; SAMME's
arithmetic and the weighted loaders are teachers/samme.py; this module weighs the members into
the professor and writes it.

References: Huang et al., "BoostingBERT: Integrating Multi-Class Boosting into BERT for NLP
Tasks" (2020); Zhu, Zou, Rosset & Hastie, "Multi-class AdaBoost" (2009).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimbert.batches import DataSpec, TaskData, prepare
from slimbert.cards import write_card
from slimbert.data import REGRESSION
from slimbert.errors import SlimbertError
from slimbert.files import atomic_dir, write_json_atomic
from slimbert.metrics import compute_metrics
from slimbert.models import (
    load_model_dir,
    load_tokenizer,
    model_label_map,
    model_task,
    resolve_base,
    save_model,
)
from slimbert.provenance import library_versions
from slimbert.record import ModelRecord, write_record
from slimbert.settings import setting
from slimbert.teachers.boost_members import Member, MemberTraining
from slimbert.teachers.ensemble import COMBINES, ENSEMBLE_FILE, ENSEMBLE_FORMAT, combine_logits
from slimbert.training.config import TrainConfig
from slimbert.training.state import RunFiles

WEIGHTINGS = ("loss", "resample", "bag")


@dataclass
class BoostConfig:
    """rounds:       K, the most members fine-tuned (boosting may stop earlier, see the module doc)
    shrinkage:    ν, scales every α (sklearn's AdaBoost learning_rate); < 1 reweights more gently
    weighting:    "loss" (per-example loss weights n · w_i), "resample" (weighted sampling every
                  epoch) or "bag" (one weighted bag per member, scored on the rows left out)
    first_member: an already fine-tuned teacher directory to use as round 1 instead of training
                  one (it was trained on uniform weights, which is what round 1 is); it must
                  share the base's tokenizer
    combine:      "logits" (vote-weighted logits) or "probabilities" (vote-weighted mixture)
    retries:      fresh attempts (next seeds) for a member whose weighted error is chance-level
                  or that answers one class everywhere; one unlucky fine-tune (e.g. early
                  stopping at a majority-class checkpoint) should not end the ensemble"""

    rounds: int = setting(
        3,
        "K, the most members; boosting stops early at a chance-level or error-free member.",
        min=1,
    )
    shrinkage: float = setting(
        1.0, "ν scaling every member's vote α (1.0 is plain SAMME).", min=0, min_open=True
    )
    weighting: str = setting(
        "loss",
        "Sample weights as per-example loss weights, as weighted resampling every epoch, or "
        "as one weighted bag per member whose left-out rows give its error (bag: the vote "
        "weighs unseen rows, not memorised ones).",
        choices=WEIGHTINGS,
    )
    first_member: Path | None = setting(
        None, "An already fine-tuned teacher (same base) to use as round 1."
    )
    combine: str = setting(
        "logits",
        "Members' vote-weighted logits, or their vote-weighted probability mixture.",
        choices=COMBINES,
    )
    retries: int = setting(
        1,
        "A member no better than chance (or answering one class everywhere) is fine-tuned "
        "again with the next seed this many times before boosting stops.",
        min=0,
    )

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise SlimbertError(
                f"--rounds {self.rounds}: a boosted professor needs at least 1 round"
            )
        if not self.shrinkage > 0:
            raise SlimbertError(
                f"--shrinkage {self.shrinkage}: give a positive shrinkage (1.0 is plain SAMME)"
            )
        if self.weighting not in WEIGHTINGS:
            raise SlimbertError(
                f"--weighting {self.weighting!r}: choose one of {', '.join(WEIGHTINGS)}"
            )
        if self.combine not in COMBINES:
            raise SlimbertError(f"--combine {self.combine!r}: choose one of {', '.join(COMBINES)}")
        if self.weighting == "bag" and self.first_member is not None:
            raise SlimbertError(
                f"--first-member {self.first_member} with --weighting bag: that teacher trained "
                "on every row, so no left-out rows can score it; drop --first-member (round 1 "
                "then trains on its own bag) or use --weighting resample"
            )


def round_error(record: dict) -> str:
    """A round's weighted error as the logs and reports print it, naming the rows it was
    measured on when those were the ones left out of the member's bag."""
    text = f"weighted error {record['weighted_error']:.4f}"
    if "out_of_bag_rows" in record:
        text += f" (on the {record['out_of_bag_rows']} rows left out of its bag)"
    return text


@dataclass
class Boosted:
    """What the rounds leave: each kept member's vote α and eval logits (N_eval, C), every
    round's record (kept, dropped or retried) and why the boosting ended."""

    stopped: str
    alphas: list[float] = field(default_factory=list)
    eval_logits: list[np.ndarray] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)

    def ensemble_metrics(self, data: TaskData, combine: str):
        """The eval metrics of the members kept so far, combined by their votes."""
        return compute_metrics(
            combine_logits(self.eval_logits, self.alphas, combine),
            data.eval_targets,
            data.task,
            data.label_map,
            data.scoring,
        )


def boost(
    base: str, spec: DataSpec, out: Path, boost_config: BoostConfig, config: TrainConfig
) -> ModelRecord:
    """Fine-tune up to K members with SAMME reweighting and save the ensemble to `out`.

    Returns the professor's record (its slimbert.json): eval figures of the ensemble, and in
    `details` every round's member figures, weighted error, α and largest sample weight.
    """
    base_dir = resolve_base(base)
    tokenizer = load_tokenizer(base_dir)
    first = None
    label_map, task = None, None
    if boost_config.first_member is not None:
        first, first_tokenizer, _ = load_model_dir(boost_config.first_member, "--first-member")
        if first_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise SlimbertError(
                f"--first-member {boost_config.first_member}: its tokenizer differs from "
                f"--base {base}'s; give a teacher fine-tuned from the same base"
            )
        label_map, task = model_label_map(first), model_task(first)
    data = prepare(spec, tokenizer, label_map=label_map, task=task)
    if data.task == REGRESSION:
        raise SlimbertError(
            f"{spec.train}: professor boost needs a classification task (SAMME counts wrong "
            "labels); this one is regression"
        )
    members = MemberTraining(
        base_dir,
        data,
        config,
        boost_config.weighting,
        boost_config.shrinkage,
        boost_config.rounds,
        RunFiles(out, config.resume),
        first,
        boost_config.first_member,
    )
    n = len(members.targets)
    weights = np.full(n, 1.0 / n)
    boosted = Boosted(stopped=f"ran all {boost_config.rounds} rounds")
    with atomic_dir(out) as staging:
        for m in range(boost_config.rounds):
            member_dir = staging / f"member-{m}"
            member = members.fit_round(m, weights, member_dir, boost_config.retries, boosted.rounds)
            if member.failed:
                why = (
                    f"degenerate, {member.degenerate}"
                    if member.degenerate
                    else f"weighted error {member.update.error:.3f} ≥ 1 − 1/K, no better than "
                    "chance"
                )
                if m == 0:
                    raise SlimbertError(
                        f"professor boost: the first member is {why} on {spec.train}; "
                        "train it longer or with a higher --lr"
                    )
                boosted.rounds.append({**member.record, "kept": False})
                boosted.stopped = f"stopped at round {m + 1}: {why}"
                break
            if not member.reused:
                _save_member(member, tokenizer, member_dir, base, m, data)
            boosted.alphas.append(member.update.alpha)
            boosted.eval_logits.append(member.eval_logits)
            ensemble_metrics = boosted.ensemble_metrics(data, boost_config.combine)
            boosted.rounds.append(
                {**member.record, "kept": True, "ensemble_eval": ensemble_metrics.values}
            )
            member.model.to("cpu")
            update = member.update
            del member
            weights = update.weights
            if update.perfect:
                boosted.stopped = (
                    f"stopped at round {m + 1}: the member makes no training errors, "
                    "nothing left to reweight"
                )
                break
        return _write_professor(staging, boosted, base, tokenizer, data, boost_config, config)


def _save_member(
    member: Member, tokenizer, member_dir: Path, base: str, m: int, data: TaskData
) -> None:
    """A kept member's folder: an ordinary classifier with its round's metadata."""
    save_model(
        member.model,
        tokenizer,
        member_dir,
        ModelRecord(
            role="professor-member",
            method="boost-member",
            base=str(base),
            data=data.describe(),
            metric=member.metrics.values,
            metric_name=member.metrics.name,
            train_config=asdict(member.config),
            details={"round": m},
        ),
    )


def _write_professor(
    staging: Path,
    boosted: Boosted,
    base: str,
    tokenizer,
    data: TaskData,
    boost_config: BoostConfig,
    config: TrainConfig,
) -> ModelRecord:
    """ensemble.json (the members' votes), the tokenizer, slimbert.json and the model card in
    `staging`; the folders of dropped rounds removed. The professor's record."""
    rounds, alphas = boosted.rounds, boosted.alphas
    kept = [r for r in rounds if r["kept"]]
    best = max(range(len(kept)), key=lambda i: (kept[i]["eval_main"], -i))  # earliest on ties
    final = boosted.ensemble_metrics(data, boost_config.combine)
    total = float(sum(alphas))
    ensemble = {
        "format": ENSEMBLE_FORMAT,
        "combine": boost_config.combine,
        "members": [r["member"] for r in kept],
        "alphas": alphas,
        "weights": [a / total for a in alphas],
        "best_member": best,
        "id2label": {str(k): v for k, v in data.label_map.id2label.items()},
        "task": data.task,
    }
    write_json_atomic(staging / ENSEMBLE_FILE, ensemble)
    tokenizer.save_pretrained(str(staging))
    # a dropped round's folder (a retried attempt shares its round's name with the retry)
    for stale in {r["member"] for r in rounds} - set(ensemble["members"]):
        shutil.rmtree(staging / stale, ignore_errors=True)
    record = ModelRecord(
        role="professor",
        method="boost",
        base=str(base),
        members=len(kept),
        data=data.describe(),
        metric=final.values,
        metric_name=final.name,
        method_config={
            **asdict(boost_config),
            "first_member": str(boost_config.first_member) if boost_config.first_member else None,
        },
        train_config=asdict(config),
        versions=library_versions(),
        details={"best_member": kept[best]["member"], "stopped": boosted.stopped, "rounds": rounds},
    )
    write_record(staging, record)
    write_card(staging, record, {"id2label": ensemble["id2label"]})
    return record
