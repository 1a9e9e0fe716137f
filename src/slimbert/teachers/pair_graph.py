"""The pair graph behind PS-DA: new sentence pairs that the training pairs' own labels imply.

Read the training pairs as a graph: one node per sentence, one edge per labelled pair, similar
(~) or dissimilar (≁). Similarity is symmetric and transitive; dissimilarity is symmetric and
carries across similar sentences. So the graph implies pairs nobody labelled:

    symmetry                  a ~ b           ⇒  b ~ a            a ≁ b  ⇒  b ≁ a
    transitivity-similar      a ~ b,  b ~ c   ⇒  a ~ c
    transitivity-dissimilar   a ~ b,  b ≁ c   ⇒  a ≁ c

        a ───~─── b ───~─── c             a ───~─── b ───≁─── c
         ╲· · · · ~ · · · · ╱              ╲· · · · ≁ · · · · ╱        (dotted: derived)

A longer path composes the same way: only similar edges give a similar pair, exactly one
dissimilar edge a dissimilar pair, two or more nothing (a ≁ b ≁ c says nothing of a, c).

What keeps the new pairs honest, applied in this order and counted per rule (`RuleCount`):

    duplicate   the pair (either order) is already a training pair, or was derived before
    eval_leak   either sentence is in the eval set (compared case- and space-insensitively),
                so no augmented pair lets the professor see an eval sentence
    conflict    paths derive the pair with both labels (noisy annotations); dropped entirely
    cap         more than `per_pair` transitive pairs credited to one source pair (the pair
                whose edge starts the path; shortest paths first), or past `max_transitive`

(`filtered`, the teacher's veto, and `added` are counted by teachers/pair_augment.py.)
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass

from slimbert.data import text_key
from slimbert.errors import SlimbertError

RULES = ("symmetry", "transitivity-similar", "transitivity-dissimilar")
MAX_PATH = 4  # longer paths multiply candidates combinatorially and compound label noise


@dataclass
class PairAugmentConfig:
    """symmetry:          add b–a for every training pair a–b, with its label
    transitivity:      compose paths of training pairs into new pairs
    max_path:          most training pairs one derived pair composes (2 = the rules as written)
    per_pair:          most transitive pairs credited to one source pair (None: no cap)
    max_transitive:    most transitive pairs in all (None: no cap)
    similar_label:     the label that means "similar" (default: the positive class, GLUE's '1')
    filter_confidence: with a teacher, drop a new pair it labels the other way with at least
                       this probability (None: keep every pair)"""

    symmetry: bool = True
    transitivity: bool = True
    max_path: int = 2
    per_pair: int | None = 4
    max_transitive: int | None = None
    similar_label: str | None = None
    filter_confidence: float | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.max_path <= MAX_PATH:
            raise SlimbertError(
                f"--max-path {self.max_path}: give 2 to {MAX_PATH} (2 composes two training pairs)"
            )
        if self.per_pair is not None and self.per_pair < 0:
            raise SlimbertError(
                f"--per-pair {self.per_pair}: give 0 or more new pairs per source pair"
            )
        if self.max_transitive is not None and self.max_transitive < 0:
            raise SlimbertError(f"--max-transitive {self.max_transitive}: give 0 or more")
        if self.filter_confidence is not None and not 0.5 <= self.filter_confidence <= 1.0:
            raise SlimbertError(
                f"--filter-confidence {self.filter_confidence}: give a probability in [0.5, 1]"
            )


@dataclass(frozen=True)
class NewPair:
    """A derived pair of sentence ids (into Derivation.sentences), its label and provenance."""

    first: int
    second: int
    similar: bool
    rule: str
    source: int  # index of the training pair it was derived from


@dataclass
class RuleCount:
    """What happened to the pairs one rule derived (distinct pairs, not paths)."""

    derived: int = 0
    duplicate: int = 0
    eval_leak: int = 0
    conflict: int = 0
    cap: int = 0
    filtered: int = 0
    added: int = 0


@dataclass
class Derivation:
    sentences: list[str]  # surface form of each sentence id (its first occurrence)
    pairs: list[NewPair]  # survivors of duplicate, eval_leak, conflict and cap, in derivation order
    counts: dict[str, RuleCount]


def derive(
    pairs: list[tuple[str, str, bool]], eval_sentences: set[str], config: PairAugmentConfig
) -> Derivation:
    """New pairs implied by labelled pairs (first, second, similar); eval_sentences are keys
    (`data.text_key`) that no new pair may contain."""
    ids: dict[str, int] = {}
    sentences: list[str] = []

    def node(text: str) -> int:
        key = text_key(text)
        if key not in ids:
            ids[key] = len(sentences)
            sentences.append(text)
        return ids[key]

    edges = [(node(a), node(b), similar) for a, b, similar in pairs]
    trained_labels: dict[frozenset, set[bool]] = defaultdict(set)
    for a, b, similar in edges:
        trained_labels[frozenset((a, b))].add(similar)
    ordered = {(a, b) for a, b, _ in edges}
    leaked = {i for i, text in enumerate(sentences) if text_key(text) in eval_sentences}
    counts = {rule: RuleCount() for rule in RULES}
    kept: list[NewPair] = []

    if config.symmetry:
        seen: set[tuple[int, int]] = set()
        tally = counts["symmetry"]
        for i, (a, b, similar) in enumerate(edges):
            if a == b:  # a sentence paired with itself is its own mirror
                continue
            tally.derived += 1
            if (b, a) in ordered or (b, a) in seen:
                tally.duplicate += 1
            elif a in leaked or b in leaked:
                tally.eval_leak += 1
            elif len(trained_labels[frozenset((a, b))]) > 1:
                tally.conflict += 1
            else:
                kept.append(NewPair(b, a, similar, "symmetry", i))
            seen.add((b, a))

    if config.transitivity:
        kept += _transitive(edges, trained_labels, leaked, counts, config)
    return Derivation(sentences, kept, counts)


def _rule(similar: bool) -> str:
    return "transitivity-similar" if similar else "transitivity-dissimilar"


def _transitive(
    edges: list[tuple[int, int, bool]],
    trained_labels: dict[frozenset, set[bool]],
    leaked: set[int],
    counts: dict[str, RuleCount],
    config: PairAugmentConfig,
) -> list[NewPair]:
    """Breadth-first over simple paths that start with each training pair (in file order, both
    orientations), so each derived pair is credited to the first source pair that reaches it
    by a shortest path."""
    adjacency: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for a, b, similar in edges:
        adjacency[a].append((b, similar))
        adjacency[b].append((a, similar))
    labels: dict[frozenset, set[bool]] = defaultdict(set)
    first: dict[frozenset, NewPair] = {}
    for i, (a, b, similar) in enumerate(edges):
        for start, via in ((a, b), (b, a)):
            if start == via:
                continue
            # node, dissimilar edges crossed, edges, path
            queue = deque([(via, 0 if similar else 1, 1, (start, via))])
            while queue:
                here, dissimilar, length, path = queue.popleft()
                for there, edge_similar in adjacency[here]:
                    if there in path:
                        continue
                    crossed = dissimilar + (0 if edge_similar else 1)
                    if crossed > 1:
                        continue
                    key = frozenset((start, there))
                    labels[key].add(crossed == 0)
                    if key not in first:
                        first[key] = NewPair(start, there, crossed == 0, _rule(crossed == 0), i)
                    if length + 1 < config.max_path:
                        queue.append((there, crossed, length + 1, (*path, there)))

    kept: list[NewPair] = []
    per_source: Counter[int] = Counter()
    for key, pair in first.items():
        rules = [_rule(similar) for similar in sorted(labels[key], reverse=True)]
        for rule in rules:
            counts[rule].derived += 1
        if key in trained_labels:
            reason = "duplicate"
        elif pair.first in leaked or pair.second in leaked:
            reason = "eval_leak"
        elif len(rules) > 1:
            reason = "conflict"
        elif (config.per_pair is not None and per_source[pair.source] >= config.per_pair) or (
            config.max_transitive is not None and len(kept) >= config.max_transitive
        ):
            reason = "cap"
        else:
            per_source[pair.source] += 1
            kept.append(pair)
            continue
        for rule in rules:
            setattr(counts[rule], reason, getattr(counts[rule], reason) + 1)
    return kept
