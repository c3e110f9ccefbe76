"""Checks on hand-written report and README text: every number and every comparative claim must come
from a function over the records (a generated macro, table or block), not be typed.

:func:`findings` reads LaTeX source and returns what a reader would take as a typed result:
- a number (integer or decimal) outside :data:`ASSIGNMENT_NUMBERS`, the facts the assignment itself
  fixes (split sizes, layer sizes, the starter's settings and the two accuracies it quotes);
  digits inside identifiers (fc1, LeNet-5, sparse60, L2, conv1) and LaTeX markup do not count;
- a sentence with a comparative word (:data:`COMPARATIVE`; "at most"/"at least" are constraints,
  not comparisons; words inside a LaTeX quotation ``...'' are the quoted source's, not a claim)
  and no generated macro in it. Captions count: a caption that ranks must
  take its words from a macro too.

Generated macros are those defined in the generated files (``report/tables/*.tex``):
:func:`generated_macros`.
"""
from __future__ import annotations

import re
from pathlib import Path

ASSIGNMENT_NUMBERS = {
    "61.5", "89.38",                 # the assignment's two accuracies
    "60", "10", "70,000", "60,000", "10,000",  # 60% density budget, 10 epochs/pages, the split
    "30,720", "10,080", "40,800",    # fc1 and fc2 weights
    "44,426", "28", "64", "5",       # parameters, image side, starter batch, LeNet-5
}
COMPARATIVE = re.compile(
    r"\b(best|better|worse|worst|fast(er|est)|slow(er|est)|cheap(er|est)|high(er|est)|low(er|est)|"
    r"most|least|fewer|outperform\w*|beat(s|en)?|lead(s|ing)?|ahead|behind|close(st|r)?|"
    r"dominat\w*|superior|inferior|win(s|ner|ning)?|exceed\w*|surpass\w*|improv\w*|hurts?|"
    r"recover\w*|degrad\w*|suits?|far|rank\w*|gap)\b", re.IGNORECASE)
_MACRO = re.compile(r"\\([A-Za-z]+)")
_DEFINED = re.compile(r"\\(?:re)?newcommand\{?\\([A-Za-z]+)\}?")


def generated_macros(tables_dir: Path) -> set[str]:
    """Names of the macros the generated ``*.tex`` files under ``tables_dir`` define."""
    names = set()
    for path in Path(tables_dir).glob("*.tex"):
        names |= set(_DEFINED.findall(path.read_text()))
    return names


def strip_latex(text: str) -> str:
    """The prose of LaTeX source: comments, preamble, \\input/\\includegraphics/begin/end lines,
    command options and the arguments of layout commands removed; ``{,}`` thousands kept as ``,``."""
    text = re.sub(r"(?<!\\)%.*", "", text)
    if r"\begin{document}" in text:
        text = text.split(r"\begin{document}", 1)[1]
    text = text.replace("{,}", ",")
    text = re.sub(r"\\(input|include|includegraphics|label|ref|cite|IfFileExists|begin|end|vspace|hspace|"
                  r"resizebox|texttt)(\[[^\]]*\])?\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"[\d.]+\\(textwidth|linewidth|em|pt|cm)", " ", text)
    text = re.sub(r"(?<![\w.])[\d.]+(pt|cm|mm|in|em|ex)\b", " ", text)  # layout lengths: {2.5pt}
    return text


def _sentences(text: str) -> list[str]:
    flat = re.sub(r"\s+", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\\])|\\paragraph|\\section|\\caption", flat) if s.strip()]


def typed_numbers(text: str, allowed=ASSIGNMENT_NUMBERS) -> list[str]:
    """Numbers in the prose of ``text`` (:func:`strip_latex`) not in ``allowed``."""
    prose = strip_latex(text)
    prose = re.sub(r"\\pm\s*1\b", " ", prose)  # "+-1 standard deviation" bands
    prose = _MACRO.sub(" ", prose)
    prose = re.sub(r"\b[A-Za-z][A-Za-z_]*-?\d+[A-Za-z\d]*\b", " ", prose)  # fc1, LeNet-5, sparse60, L2
    prose = re.sub(r"(_|\^)\{?-?\d+\}?", " ", prose)  # sub/superscripts: 10^{-3}, L_2
    numbers = re.findall(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])\d+(?:\.\d+)?", prose)
    return [n for n in numbers if n not in allowed]


def unbacked_comparisons(text: str, macros: set[str]) -> list[str]:
    """Sentences of ``text`` with a comparative word and no macro from ``macros``."""
    out = []
    for sentence in _sentences(strip_latex(text)):
        plain = re.sub(r"\bat (most|least)\b", " ", _MACRO.sub(" ", sentence), flags=re.IGNORECASE)
        plain = re.sub(r"``.*?''", " ", plain)
        if COMPARATIVE.search(plain) and not set(_MACRO.findall(sentence)) & macros:
            out.append(sentence)
    return out


def findings(text: str, macros: set[str], allowed=ASSIGNMENT_NUMBERS) -> list[str]:
    """Every typed number and unbacked comparative sentence of ``text``, as readable lines."""
    return ([f"typed number {n!r}" for n in typed_numbers(text, allowed)] +
            [f"comparison without a generated macro: {s[:160]!r}" for s in unbacked_comparisons(text, macros)])


def readme_block(readme_text: str, name: str) -> str:
    """The text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (the newline after the
    start marker dropped), as :func:`helpers.evidence.report_artifacts.update_readme` writes it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in readme_text or end not in readme_text:
        raise ValueError(f"README has no {start} ... {end} block")
    block = readme_text.split(start, 1)[1].split(end, 1)[0]
    return block[1:] if block.startswith("\n") else block
