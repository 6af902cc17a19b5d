"""One sentence, for the terminal and the report alike: how the study protected what left
the sites (masking, small cells, and the differential-privacy budget it spent)."""

from __future__ import annotations

from fedrad.server.report.model import number


def privacy_sentence(results: dict) -> str:
    privacy = results.get("privacy") or {}
    if not privacy:
        return ""
    masked = (
        "sites sent summed quantities masked (secure aggregation): only totals over sites "
        "were unmasked"
        if privacy.get("secure_aggregation")
        else "sites sent their sums in the clear (no secure aggregation)"
    )
    budget = privacy.get("differential_privacy")
    if budget is None:
        noise = "no differential privacy"
    else:
        noise = (
            f"differential privacy spent epsilon {number(budget['epsilon'])} at delta "
            f"{budget['delta']:g} over {budget['releases']} noised releases (noise "
            f"{budget['noise_multiplier']:g} x sensitivity, model inputs clipped to norm "
            f"{budget['input_clip']:g})"
        )
    return f"Privacy: {masked}; counts below {privacy.get('min_cell_size')} suppressed; {noise}."
