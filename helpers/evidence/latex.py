"""LaTeX text for the report's generated files: escaping, numbers, tables, macro definitions."""
from __future__ import annotations

import math

import pandas as pd

_TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
                "$": r"\$", "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}


def tex(text) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def pm(mean, std, digits=2) -> str:
    if pd.isna(mean):
        return "--"
    return f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" $\\pm$ {std:.{digits}f}")


def num(value, digits=0) -> str:
    if pd.isna(value):
        return "--"
    return f"{value:,.{digits}f}".replace(",", "{,}")


def tabular(columns: str, header: list[str], rows: list[list[str]], raw=()) -> str:
    """A booktabs tabular; ``columns`` is the column spec, cells are LaTeX already; ``raw``: whole
    lines (e.g. a \\multicolumn note) after the rows."""
    lines = [f"\\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" if isinstance(r, list) else r for r in rows]
    lines += list(raw)
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def power(value: float) -> str:
    """1e-06 -> "$10^{-6}$", 0.5 -> "0.5"."""
    exponent = math.log10(value) if value > 0 else float("nan")
    if exponent == round(exponent):
        return "$1$" if exponent == 0 else f"$10^{{{int(exponent)}}}$"
    return f"{value:g}"


def scientific(value: float, digits: int = 2) -> str:
    """2e-07 -> "$2 \\times 10^{-7}$", 3.162e-05 -> "$3.2 \\times 10^{-5}$" (``digits`` significant)."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def kilo(value) -> str:
    return "--" if pd.isna(value) else f"{value / 1000:,.0f}k".replace(",", "{,}")


def macros_tex(values: dict[str, str]) -> str:
    return "".join(f"\\newcommand{{\\{k}}}{{{v}}}\n" for k, v in sorted(values.items()))
