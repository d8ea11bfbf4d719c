"""Decode a recogniser's per-frame scores into the best reading a plate template allows.

A CTC recogniser (PP-OCR's) scores every character class at every horizontal frame. Taking
the best class per frame and collapsing repeats (greedy decoding) reads whatever text is
most likely — 豫 where the plate says 蒙, an O where GA 36 allows no O, eight characters
where a plate has seven. Here the search runs only over texts a template allows: a Viterbi
alignment of the frames to the template's positions (blank, position 1, blank, …), each
position scored by the best character of its own alphabet; then each position takes the
character its frames support most. The best-scoring template wins, and its per-position
probabilities give the confidence. Nothing is patched: a text no template fits cannot come
out, and a poor fit shows as low confidence.

Pure numpy; the recogniser is elsewhere (:mod:`plates.engines`).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEPARATORS = "·•.。、-—_:： '\"`"
"""Marks a recogniser may read between the characters of a plate (the dot after the
authority letter, stains, rivets); they count as nothing, like the CTC blank."""

_NEG = -1e30

GLYPHS = {"0": "OoΟ〇Ｏ０", "1": "Il|iＩｌ１", "2": "Ｚ２", **{
    chr(c): chr(c).lower() + chr(c + 0xFEE0) for c in range(ord("A"), ord("Z") + 1)}}
"""Classes of a generic recogniser that look like one plate character and cannot mean
anything else on a plate: GA 36 has no O and no I, so the round glyph is a 0 and the bar
a 1, and plates have no lower-case or full-width letters. The recogniser spreads its belief
over such look-alikes; :func:`fold_glyphs` gives it back to the plate character. (Z is
not folded into 2: both are plate characters.)"""


@dataclass(frozen=True)
class Pattern:
    """What to decode: an id and, per position, the characters allowed there."""

    id: str
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class Decoded:
    """The best reading of one pattern.

    Attributes
    ----------
    text : str
        One character per position of the pattern.
    char_confidence : tuple[float, ...]
        Per position, the highest probability the recogniser gave that character on the
        frames aligned to it.
    score : float
        Log-probability of the alignment (higher is better); comparable between patterns
        decoded from the same frames.
    fit : float
        exp((score − unconstrained best-path score) / frames): 1 when the template reading is
        also what the recogniser would read unconstrained, lower the more it had to bend.
    unexplained : float
        Product over the symbols the recogniser read that no position took up (an eighth
        character forced into a seven-character template) of the chance the symbol is not
        there; 1 when every symbol read is accounted for.
    first_scores : tuple[float, ...]
        For each character the first position allows, in the pattern's order, the highest
        probability the recogniser gave it on that position's frames: what a second
        opinion on the province weighs against.
    """

    pattern: str
    text: str
    char_confidence: tuple[float, ...]
    score: float
    fit: float
    unexplained: float = 1.0
    first_scores: tuple[float, ...] = ()

    @property
    def confidence(self) -> float:
        """Probability that every character is right and none is missing, taken as
        independent."""
        return float(np.prod(self.char_confidence)) * self.unexplained


class Charset:
    """The recogniser's classes: index 0 is the CTC blank, then one character each."""

    def __init__(self, characters: Sequence[str]):
        self.characters = tuple(characters)
        self.index = {ch: i for i, ch in enumerate(self.characters) if i > 0}
        self.ignorable = np.array(
            [0, *(self.index[ch] for ch in SEPARATORS if ch in self.index)], dtype=np.intp)
        pairs = [(self.index[ch], self.index[alias]) for ch, aliases in GLYPHS.items()
                 if ch in self.index for alias in aliases if alias in self.index]
        self.fold_into = np.array([p[0] for p in pairs], dtype=np.intp)
        self.fold_from = np.array([p[1] for p in pairs], dtype=np.intp)

    def classes(self, chars: str) -> np.ndarray:
        """Class indices of ``chars``; KeyError naming any the recogniser cannot output."""
        missing = [ch for ch in chars if ch not in self.index]
        if missing:
            raise KeyError(f"the recogniser has no class for {''.join(missing)!r}")
        return np.array([self.index[ch] for ch in chars], dtype=np.intp)


def greedy(probs: np.ndarray, charset: Charset) -> str:
    """Unconstrained best-path reading: best class per frame, repeats collapsed, blanks and
    separators dropped (what a generic OCR pipeline prints)."""
    best = probs.argmax(axis=1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    ignorable = set(charset.ignorable.tolist())
    return "".join(charset.characters[i] for i in best[keep] if i not in ignorable)


def fold_glyphs(probs: np.ndarray, charset: Charset) -> np.ndarray:
    """The probabilities with each look-alike's share added to its plate character
    (:data:`GLYPHS`); the look-alikes keep theirs, but no template can choose them."""
    if not len(charset.fold_into):
        return probs
    folded = probs.copy()
    np.add.at(folded, (slice(None), charset.fold_into), probs[:, charset.fold_from])
    return folded


def decode(probs: np.ndarray, patterns: Sequence[Pattern], charset: Charset) -> Decoded | None:
    """The best reading of ``probs`` (frames × classes, softmax) among ``patterns``.

    Returns None when no pattern fits in the frames (fewer frames than characters).
    """
    probs = fold_glyphs(_drop_blank_runs(probs, charset), charset)
    if "0" in charset.index:
        probs = np.concatenate([probs, probs[:, [charset.index["0"]]]], axis=1)
    blank_p = probs[:, charset.ignorable].sum(axis=1)
    blank = np.log(np.clip(blank_p, 1e-12, 1.0))
    free = float(np.log(np.clip(probs.max(axis=1), 1e-12, 1.0)).sum())
    best: Decoded | None = None
    for pattern in patterns:
        if len(pattern.allowed) > len(probs):
            continue
        classes = _class_table(pattern, charset)
        score, picks, segments = _viterbi(probs, blank, classes)
        text = "".join(pattern.allowed[k][a] for k, a in enumerate(picks))
        confidence = tuple(float(probs[frames, classes[k, a]].max())
                           for k, (a, frames) in enumerate(zip(picks, segments, strict=True)))
        first = probs[segments[0]][:, classes[0, : len(pattern.allowed[0])]]
        found = Decoded(pattern.id, text, confidence, score,
                        float(np.exp((score - free) / len(probs))),
                        _unexplained(probs, segments, charset),
                        tuple(first.max(axis=0).tolist()) if len(first) else ())
        if best is None or found.score > best.score:
            best = found
    return best


BLANK_SURE = 0.999
"""A frame whose blank (and separator) probability is above this is certainly no
character; of a run of such frames one is enough for the alignment."""


def _drop_blank_runs(probs: np.ndarray, charset: Charset) -> np.ndarray:
    """The frames with runs of certain blanks shortened to one frame.

    Padding to the recogniser's input width leaves many; no best path spends a character
    on them, so dropping all but one changes no reading and cuts the alignment's work.
    """
    sure = probs[:, charset.ignorable].sum(axis=1) > BLANK_SURE
    keep = ~sure
    keep[1:] |= sure[1:] & ~sure[:-1]
    keep[0] = True
    return probs[keep]


def _class_table(pattern: Pattern, charset: Charset) -> np.ndarray:
    """Positions × characters: the class index of each allowed character, −1 padding."""
    width = max(len(chars) for chars in pattern.allowed)
    table = np.full((len(pattern.allowed), width), -1, dtype=np.intp)
    for k, chars in enumerate(pattern.allowed):
        table[k, : len(chars)] = charset.classes(chars)
        if "O" in chars and "0" not in chars and "0" in charset.index:
            # the round glyph where no digit may stand (an authority letter, 粤O) can
            # only be the letter: it scores by every round glyph's probability (the
            # folded 0's, the column decode() adds last), not by the recogniser's often
            # small share for the Latin O
            table[k, chars.index("O")] = len(charset.characters)
    return table


def _viterbi(probs: np.ndarray, blank: np.ndarray, classes: np.ndarray
             ) -> tuple[float, list[int], list[np.ndarray]]:
    """CTC best path through blank₀, position 0, blank₁, …, position K−1, blank_K, where
    position k holds one character of its alphabet (row k of ``classes``).

    As in CTC, a character may follow the previous one directly only if it differs from
    it; the same character twice needs a blank between. Returns the path's score, the
    character chosen at each position (column of ``classes``) and the frames it holds.
    """
    frames, (positions, width) = len(probs), classes.shape
    valid = classes >= 0
    emit = np.log(np.clip(probs[:, np.where(valid, classes, 0)], 1e-12, 1.0))   # T × K × A
    emit[:, ~valid] = _NEG
    char = np.full((positions, width), _NEG)
    gaps = np.full(positions + 1, _NEG)
    char[0] = emit[0, 0]
    gaps[0] = blank[0]
    # back-pointers: for a character, -2 stay, -1 from the blank before, a ≥ 0 from
    # that character of the previous position; for a blank, -1 stay, a ≥ 0 from that one
    char_from = np.zeros((frames, positions, width), dtype=np.intp)
    gap_from = np.full((frames, positions + 1), -1, dtype=np.intp)
    rows = np.arange(positions - 1)
    for t in range(1, frames):
        # into a character: stay, from the blank before it, or from a different character
        prev = char[:-1].copy()                              # positions 0..K-2
        first = prev.argmax(axis=1)
        first_score = prev[rows, first]
        prev[rows, first] = _NEG
        second = prev.argmax(axis=1)
        same = classes[1:] == classes[rows, first][:, None]
        via = np.where(same, second[:, None], first[:, None])
        via_score = np.where(same, prev[rows, second][:, None], first_score[:, None])
        gap_before = gaps[:-1, None]
        best = np.maximum(char, gap_before)
        pointer = np.where(gap_before > char, -1, -2)
        better = via_score > best[1:]
        best[1:] = np.where(better, via_score, best[1:])
        pointer[1:] = np.where(better, via, pointer[1:])
        char_from[t] = pointer
        new_char = best + emit[t]
        # into a blank: stay, or from the best character of the position before it
        best_prev = char.argmax(axis=1)
        enter = char[np.arange(positions), best_prev]
        stay = gaps[1:]
        gap_from[t, 1:] = np.where(stay >= enter, -1, best_prev)
        new_gaps = np.empty_like(gaps)
        new_gaps[0] = gaps[0] + blank[t]
        new_gaps[1:] = np.maximum(stay, enter) + blank[t]
        char, gaps = np.where(valid, new_char, _NEG), new_gaps
    return _backtrack(char, gaps, char_from, gap_from, frames)


def _backtrack(char: np.ndarray, gaps: np.ndarray, char_from: np.ndarray,
               gap_from: np.ndarray, frames: int) -> tuple[float, list[int], list[np.ndarray]]:
    """Follow the back-pointers from the better of the two end states."""
    positions = char.shape[0]
    last = int(char[-1].argmax())
    in_char = bool(char[-1, last] > gaps[-1])
    total = float(char[-1, last] if in_char else gaps[-1])
    k, a = (positions - 1, last) if in_char else (positions, -1)
    held: list[list[int]] = [[] for _ in range(positions)]
    picks = [0] * positions
    for t in range(frames - 1, -1, -1):
        if in_char:
            held[k].append(t)
            picks[k] = a
            step = int(char_from[t, k, a])
            if t == 0 or step == -2:
                continue
            if step == -1:
                in_char = False              # the blank before position k
            else:
                k, a = k - 1, step
        else:
            step = int(gap_from[t, k])
            if t == 0 or step == -1:
                continue
            k, a, in_char = k - 1, step, True
    return total, picks, [np.array(sorted(h), dtype=np.intp) for h in held]


def _unexplained(probs: np.ndarray, segments: list[np.ndarray], charset: Charset) -> float:
    """Chance that no symbol the recogniser read was left out of the reading.

    The unconstrained reading's symbols are runs of frames with one best class; each
    position explains at most one run, the one it overlaps most. A run no position
    explains is a character the template had no room for: the reading is only right if
    that symbol is not really there, so its best probability p counts as (1 − p).
    """
    best = probs.argmax(axis=1)
    ignorable = np.isin(best, charset.ignorable)
    starts = np.flatnonzero(np.diff(best, prepend=-1) != 0)
    ends = np.append(starts[1:], len(best))
    runs = [(a, b) for a, b in zip(starts, ends, strict=True) if not ignorable[a]]
    explained: set[int] = set()
    for frames in segments:
        if len(frames) == 0:
            continue
        overlaps = [np.count_nonzero((frames >= a) & (frames < b)) for a, b in runs]
        if overlaps and max(overlaps) > 0:
            explained.add(int(np.argmax(overlaps)))
    chance = 1.0
    for k, (a, b) in enumerate(runs):
        if k not in explained:
            chance *= 1.0 - float(probs[np.arange(a, b), best[a:b]].max())
    return chance
