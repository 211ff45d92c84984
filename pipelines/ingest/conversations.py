"""Built-in source `conversations`: seeded conversations recombined from a real text corpus.

A pool for scale runs needs rows that look like a real pool to every scorer: real words (for
embeddings and compression ratios), a realistic length mix (log-normal, with a long tail and
some multi-turn rows), near-duplicates for near_dup to find, and never two equal rows. Rows are
built from pieces (sentences and lines) of the corpus files' prompts and responses:

- a row picks a base record (every corpus record is equally likely) and a target length per
  turn from a log-normal; the prompt is the base prompt, grown with runs of pieces from other
  prompts of the same file while it is under its target; the response keeps the base response's
  opening pieces that fit and always its last piece (GSM8K's "#### N", so `reference` holds),
  with at least MIN_FOREIGN runs of consecutive pieces from other responses' bodies inserted;
- a multi-turn row repeats this for follow-up turns, from other records of the same file;
- row `i` is row `i - 1` with 1-3 words of its last response edited when a coin of chance
  `near_dup_fraction` falls for `i` and not for `i - 1` (a share f(1 - f) of rows).

Row `i` depends only on (seed, i) and the corpus: its random draws come from
`random.Random(sha256(f"{seed}:{i}:..."))`, so any block is made by any worker, in any order.
The corpus is read once per worker process (cached by the files' sha256) and refused past
`max_corpus_bytes` of files (the plan) or of characters read (here: a compressed file holds
more text than its size), so a worker's memory is bounded by the config; records that match a
question of an `exclude` benchmark file (the contamination scorer's n-gram index) are dropped
first, so no row copies a test question.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from pipelines import storage
from pipelines.ingest import adapters, normalize, readers

MIN_FOREIGN = 2  # foreign runs in a response: what makes two rows of one base record differ
MAX_RUN = 3  # pieces in one run taken from another record
MIN_BANK = 100  # a file with fewer long responses borrows the whole corpus's (MATH's answers are one token)
# a record sharing this share of a benchmark question's n-grams is no material: half the
# contamination scorer's 0.5, as a row joins pieces of several records
EXCLUDE_OVERLAP = 0.25
EXCLUDE_CHUNK = 1_024  # records matched at a time: match_texts holds every word of its texts at once
_SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+(?=\S)")


@dataclass(frozen=True)
class CorpusFile:
    location: str
    container: str
    format: str
    sha256: str


@dataclass(frozen=True)
class Family:
    """The records of one corpus file, as pieces (each ends with its separator)."""

    prompts: tuple[tuple[str, ...], ...]
    responses: tuple[tuple[str, ...], ...]
    references: tuple[str | None, ...]
    bank: tuple[tuple[str, ...], ...]  # bodies of responses (last piece off): runs are drawn from these


@dataclass(frozen=True)
class Corpus:
    families: tuple[Family, ...]
    bank: tuple[tuple[str, ...], ...]  # every family's response bodies
    starts: tuple[int, ...]  # first global record number of each family

    @property
    def records(self) -> int:
        return self.starts[-1] + len(self.families[-1].prompts)


@dataclass(frozen=True)
class Recipe:
    seed: int
    prompt_median_chars: int
    response_median_chars: int
    length_sigma: float
    multi_turn_fraction: float
    max_turns: int
    near_dup_fraction: float

    @classmethod
    def from_settings(cls, settings: dict) -> Recipe:
        return cls(**{name: settings[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Conversation:
    index: int
    turns: list[tuple[str, str]]
    reference: str | None
    bases: list[list[int]]  # [file, record] of each user turn
    variant_of: int | None  # the row whose conversation this one edits


def fingerprint(location: str) -> str:
    """sha256 of a corpus file's bytes: the ingest identity holds it, so a changed corpus re-ingests."""
    digest = hashlib.sha256()
    with storage.open_input(location, compression=None) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pieces(text: str) -> tuple[str, ...]:
    """Sentences and lines, each with the separator that followed it; "".join gives the text back
    up to spacing."""
    out: list[str] = []
    for line in text.split("\n"):
        sentences = [s for s in _SENTENCE_END.split(line) if s.strip()]
        if not sentences:
            if out:  # a blank line: keep the paragraph break
                out[-1] += "\n"
            continue
        out += [s + " " for s in sentences[:-1]] + [sentences[-1] + "\n"]
    return tuple(out)


@lru_cache(maxsize=1)  # one corpus held at a time: what max_corpus_bytes bounds
def load(files: tuple[CorpusFile, ...], exclude: tuple[CorpusFile, ...], max_chars: int) -> Corpus:
    """The corpus, read once per worker process, less its records that match a question of an
    `exclude` benchmark file; a file changed since the plan, or text past `max_chars` (a
    compressed file holds more than its size, which the plan checked), is an error."""
    questions = _questions(exclude)
    families = []
    for corpus_file in files:
        family, held = _family(corpus_file, questions, max_chars)
        families.append(family)
        max_chars -= held
    families = tuple(families)
    for corpus_file in files + exclude:
        if fingerprint(corpus_file.location) != corpus_file.sha256:
            raise ValueError(f"corpus file {corpus_file.location} changed since the plan; run ingest again")
    empty = [f.location for f, family in zip(files, families, strict=True) if not family.prompts]
    if empty:
        raise ValueError(f"corpus files with no prompt and response to use: {', '.join(empty)}")
    starts = [0]
    for family in families[:-1]:
        starts.append(starts[-1] + len(family.prompts))
    bank = tuple(run for family in families for run in family.bank)
    if not bank:
        raise ValueError("the corpus has no response of three sentences or more to draw runs from")
    return Corpus(families=families, bank=bank, starts=tuple(starts))


def _questions(exclude: tuple[CorpusFile, ...]):
    """The contamination scorer's n-gram index of the benchmark questions; None for no file."""
    if not exclude:
        return None
    from pipelines.evaluate.settings import FileBenchmark
    from pipelines.score import contamination_benchmarks, contamination_index

    questions = []
    for n, benchmark in enumerate(exclude):
        questions += contamination_benchmarks.load_questions(FileBenchmark(name=f"exclude{n}", path=benchmark.location))
    return contamination_index.build(questions)


def _family(corpus_file: CorpusFile, questions, max_chars: int) -> tuple[Family, int]:
    """A file's records as pieces, and the characters of text read (refused past `max_chars`)."""
    prompts, responses, references, held = [], [], [], 0
    for record in readers.read(corpus_file.location, corpus_file.container):
        if record.data is None:
            continue
        try:
            adapted = adapters.adapt(corpus_file.format, record.data)
        except normalize.RowError:
            continue  # a row ingest would reject is no material either
        turns = [(r, c) for r, c in adapted.turns if r != "system"]
        response = next((c for r, c in turns if r == "assistant"), None) or adapted.reference
        if not turns or turns[0][0] != "user" or not response:
            continue
        held += len(turns[0][1]) + len(response)
        if held > max_chars:
            raise ValueError(f"corpus file {corpus_file.location}: its text passes max_corpus_bytes")
        prompts.append(pieces(turns[0][1]))
        responses.append(pieces(response))
        references.append(adapted.reference)
    if questions is not None:
        keep = _unmatched(prompts, responses, questions)
        prompts, responses, references = ([items[n] for n in keep] for items in (prompts, responses, references))
    bank = tuple(r[:-1] for r in responses if len(r) >= 3)  # no stray "#### N" lines mid-response
    return Family(tuple(prompts), tuple(responses), tuple(references), bank), held


def _unmatched(prompts: list, responses: list, questions) -> list[int]:
    """The records (prompt and response) that match no benchmark question."""
    from pipelines.score import contamination

    thresholds, keep = contamination.Thresholds(1, EXCLUDE_OVERLAP), []
    for start in range(0, len(prompts), EXCLUDE_CHUNK):
        chunk = zip(prompts[start : start + EXCLUDE_CHUNK], responses[start : start + EXCLUDE_CHUNK], strict=True)
        matches = contamination.match_texts(["".join(p) + "\n" + "".join(r) for p, r in chunk], questions, thresholds)
        keep += [start + n for n, found in enumerate(matches) if not found]
    return keep


def prepared(settings: dict) -> tuple[Corpus, Recipe]:
    """A unit's generator settings (the plan's, with its fingerprinted files) -> corpus and recipe."""
    files, exclude = (tuple(CorpusFile(**f) for f in settings[key]) for key in ("corpus_files", "exclude_files"))
    return load(files, exclude, settings["max_corpus_bytes"]), Recipe.from_settings(settings)


def generate(start: int, stop: int, corpus: Corpus, recipe: Recipe) -> Iterator[Conversation]:
    for index in range(start, stop):
        yield row(index, corpus, recipe)


def row(index: int, corpus: Corpus, recipe: Recipe) -> Conversation:
    if _is_variant(index, recipe) and not _is_variant(index - 1, recipe):
        # a variant edits the original row just before it: each original has one variant at
        # most, so two variants never repeat one another's edit, and each has its source in the pool
        return _variant(index, original(index - 1, corpus, recipe), _rng(recipe.seed, index, "edit"))
    return original(index, corpus, recipe)


def _is_variant(index: int, recipe: Recipe) -> bool:
    return index > 0 and _rng(recipe.seed, index, "variant").random() < recipe.near_dup_fraction


def _rng(seed: int, index: int, stream: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{index}:{stream}".encode()).digest()[:16], "big"))


def original(index: int, corpus: Corpus, recipe: Recipe) -> Conversation:
    """Row `index` before any near-duplicate edit (what a variant of it edits)."""
    rng = _rng(recipe.seed, index, "row")
    user_turns = 1
    if recipe.max_turns > 1 and rng.random() < recipe.multi_turn_fraction:
        user_turns = rng.randint(2, recipe.max_turns)
    first = rng.randrange(corpus.records)
    family_number = bisect.bisect_right(corpus.starts, first) - 1
    family = corpus.families[family_number]
    bases = [first - corpus.starts[family_number]] + [rng.randrange(len(family.prompts)) for _ in range(user_turns - 1)]
    bank = family.bank if len(family.bank) >= MIN_BANK else corpus.bank
    turns = []
    for base in bases:
        prompt = _prompt(rng, family, base, _length(rng, recipe.prompt_median_chars, recipe.length_sigma))
        response = _response(
            rng, family.responses[base], bank, _length(rng, recipe.response_median_chars, recipe.length_sigma)
        )
        turns += [("user", prompt), ("assistant", response)]
    return Conversation(index, turns, family.references[bases[-1]], [[family_number, b] for b in bases], None)


def _length(rng: random.Random, median: int, sigma: float) -> int:
    return int(rng.lognormvariate(math.log(median), sigma))


def _prompt(rng: random.Random, family: Family, base: int, target: int) -> str:
    chosen = list(family.prompts[base])
    while _size(chosen) < target:
        chosen += _run(rng, family.prompts[rng.randrange(len(family.prompts))])
    return "".join(chosen).strip()


def _response(rng: random.Random, own: tuple[str, ...], bank, target: int) -> str:
    head, last = list(own[:-1]), own[-1]
    while head and _size(head) + len(last) > target:  # the opening that fits, and the answer line
        head.pop()
    extra: list[str] = []
    runs = 0
    while runs < MIN_FOREIGN or _size(head) + _size(extra) + len(last) < target:
        extra += _run(rng, bank[rng.randrange(len(bank))])
        runs += 1
    at = rng.randint(0, len(head))
    text = "".join(head[:at] + extra + head[at:])
    return (text.rstrip() + ("\n" if text.endswith("\n") else " ") + last).strip()


def _run(rng: random.Random, source: tuple[str, ...]) -> list[str]:
    start = rng.randrange(len(source))
    return list(source[start : start + rng.randint(1, MAX_RUN)])


def _size(chosen: list[str]) -> int:
    return sum(len(piece) for piece in chosen)


def _variant(index: int, original: Conversation, rng: random.Random) -> Conversation:
    """The original with 1-3 words of its last response replaced, deleted or repeated."""
    words = original.turns[-1][1].split(" ")
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(words))
        edit = rng.randrange(3)
        if edit == 0 and len(words) > 1:
            del words[at]
        elif edit == 1:
            words.insert(at, words[at])
        else:
            words[at] = words[rng.randrange(len(words))] + "s"
    edited = " ".join(words).strip()
    if edited == original.turns[-1][1]:  # edits can cancel out (a word repeated, then deleted)
        edited += " ."
    turns = [*original.turns[:-1], ("assistant", edited)]
    return Conversation(index, turns, original.reference, original.bases, original.index)
