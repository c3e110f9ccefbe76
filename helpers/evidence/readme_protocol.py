"""The README's protocol bullets (``<!-- protocol:start -->`` block), every number taken from the
study definition through the report's protocol macros, so the README and the report state the
same protocol, cuts applied."""
from __future__ import annotations

import re
import textwrap

from .report_macros import protocol_macros

TEMPLATE = """\
- **Data**: the official split ({ProtocolTrainImages} train / {ProtocolTestImages} test), never
  changed. Tuning trains on {ProtocolTuneImages} images and scores on a seeded, class-stratified
  hold-out of the other {ProtocolValSize} (accuracy, then loss); final runs train on all
  {ProtocolTrainImages}, once per seed; the test set only measures them.
- **Tuning at full length**: every trial runs as long as a final run ({ProtocolEpochs} epochs).
  Every run has an oracle budget (sample gradients + Hessian-vector products) of its epochs x its
  training images: {ProtocolTuneBudget} for a trial, {ProtocolBudget} for a final run (basic SGD,
  batch 1: {ProtocolBasicEpochs} epoch, {ProtocolBasicBudget}). The study's cosine decay is planned
  over that budget, so the rate anneals when the budget is spent; schedule-free methods, L-BFGS
  and GD keep a constant base rate.
- **Search spaces, the same counts for every method**: `standard`: {ProtocolGridPoints} learning
  rates half a decade apart over the method's range, a best rate on an edge extended by up to
  {ProtocolGridExtension} points (the batch-size study's grids: until interior; never past the
  declared limits {LrLimits}; the extension's runs are counted), then {ProtocolQmcTrials} quasi-random trials (scrambled Halton,
  `scipy.stats.qmc`) over the method's other key hyperparameters at the best rate. `l2`:
  {ProtocolLtwoTrials} quasi-random trials over the rate (a decade around the standard choice) and
  the weight decay (coupled L2 {ProtocolWdCoupled}; decoupled, AdamW-like, {ProtocolWdDecoupled}).
  `sparse60`: the standard choice at {ProtocolSparseRates} rates half a decade apart, for each
  strategy: projection, {ProtocolStrategyProjection}; gradual pruning, {ProtocolStrategyGradual};
  prune then fine-tune, {ProtocolStrategyFinetune}. Thinner budgets ({ProtocolThinner}): the best
  of each family on the sparse60 hold-out.
- **Seeds**: {ProtocolSeeds} for every method; {ProtocolTopSeeds} for the {ProtocolTopK} best of
  each main scenario and the best of each family on the hold-out; {ProtocolStarterSeeds} for the
  starter. A diverged or failed run is a result: it is counted and never planned again.
- **Budget and cuts**: about {ProtocolBudgetHours} hours of training with 2 processes for the main
  comparison, {ProtocolStudiesBudgetHours} for the further studies; cuts made to fit, in the
  definition's order: {ProtocolCuts}.
- **Further studies**, rows of the same table after the main study's in priority (but for the
  variance measurements: minutes, needing only the standard finals, they follow those),
  tuned by the same code: *preprocessing* ({ProtocolPixelMethods} on [0, 1] pixels, rate re-tuned); *time to target*
  (the {ProtocolTopK} methods fastest to 89.38% on the standard hold-out; the schedule's horizon
  tuned over {ProtocolHorizons} epochs and chosen by the fewest oracle calls to 89.38% on the
  hold-out, schedule-free methods at the longest; finals evaluated every {ProtocolHorizonSpacing}
  epoch); *batch size* ({ProtocolBatchMethods} at batch {ProtocolBatchSizes}, rate re-tuned per
  batch size, at {ProtocolBatchSmallBudget} oracle calls for every batch size and at the main
  budget for all but batch {ProtocolBatchSkips}); *weight decay* ({ProtocolWdMethods} at
  {ProtocolWdPoints} decays each, coupled or decoupled as the method applies it, at the standard
  row's rates; every run's `meta.json` records the final weight norm); *gradient variance*
  (measurements, not runs: along the standard finals of {ProtocolVarianceMethods}, at
  {ProtocolVarianceEpochs} epochs of oracle calls, each estimator's mean squared error to the full
  gradient against the batch sizes {ProtocolVarianceBatches}, from per-sample gradients; stored in
  `outputs/measurements/<id>/` and read with `helpers.study.records.load_measurements`).
"""

_POWER = re.compile(r"\$10\^\{(-?\d+)\}\$")


def plain(text: str) -> str:
    """The report macros' LaTeX as Markdown text: {,} thousands, escaped characters, $10^{k}$."""
    text = _POWER.sub(lambda m: f"1e{m.group(1)}", str(text))
    for latex, markdown in (("{,}", ","), ("\\%", "%"), ("\\_", "_"), ("$1$", "1"), ("$\\pm$", "±"),
                            ("\\&", "&"), ("~", " ")):
        text = text.replace(latex, markdown)
    return text


def _short(value: float) -> str:
    """1e-06 -> "1e-6", 10.0 -> "10"."""
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def protocol_markdown(profile: str = "full", width: int = 100) -> str:
    """The README's protocol bullets for ``profile``, each wrapped at ``width``."""
    from ..study.definition import LR_LIMITS
    values = {k: plain(v) for k, v in protocol_macros(profile).items()}
    values["LrLimits"] = f"{_short(LR_LIMITS[0])}..{_short(LR_LIMITS[1])}"
    bullets = TEMPLATE.format(**values).split("\n- ")
    return "".join(textwrap.fill(" ".join(b.removeprefix("- ").split()), width, initial_indent="- ",
                                 subsequent_indent="  ", break_on_hyphens=False) + "\n" for b in bullets)
