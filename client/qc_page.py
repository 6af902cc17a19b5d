"""qc.html: the QC table with each case's thumbnails, so a site operator sees at a glance
whether the masks sit on the tumours.

Self-contained (no scripts, no external files, images as data URIs) so it opens offline
and can be attached to a ticket; failed cases come first, and radio buttons (CSS only)
hide the usable ones. The page never leaves the site: nothing sends it anywhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from fedrad.client.cases import FAILED, WARNING, CaseStatus
from fedrad.client.qc_preview import CasePreview, SequenceView
from fedrad.client.qc_report import site_lines, summary
from fedrad.client.qc_thumbnail import THUMBNAIL_PX, WINDOW_PERCENTILES, region_colour
from fedrad.client.site_plan import SitePlan

_ORDER = {FAILED: 0, WARNING: 1}  # failed cases first, then warnings, then the rest
_STYLE = f"""
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
td:nth-child(5) {{ max-width: 28em; }}
tr.failed td {{ background: #fde2e2; }}
tr.warning td {{ background: #fff4d6; }}
figure {{ margin: 0; width: {THUMBNAIL_PX}px; }}
figure img {{ display: block; background: #000; }}
figure img:hover {{ transform: scale(2.5); transform-origin: top left; position: relative;
  z-index: 1; image-rendering: pixelated; }}
figcaption, .absent {{ font-size: 75%; color: #444; }}
.absent {{ width: {THUMBNAIL_PX}px; height: {THUMBNAIL_PX}px; box-sizing: border-box;
  padding: 8px; border: 2px dashed #999; background: #f4f4f4; overflow-wrap: anywhere; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle;
  margin-right: 0.3em; border: 1px solid #333; }}
#readiness .problem {{ color: #a4161a; font-weight: bold; }} #readiness .note {{ color: #8a5a00; }}
#readiness .ready {{ color: #1b7837; font-weight: bold; }}
.local {{ border-left: 4px solid #0072b2; padding: 0.3em 0.8em; background: #eef6fb; }}
#show-failed:checked ~ table tr.ok, #show-failed:checked ~ table tr.warning,
#show-flagged:checked ~ table tr.ok {{ display: none; }}
"""


def write_html(
    plan: SitePlan,
    statuses: Sequence[CaseStatus],
    path: Path,
    study_hash: str,
    previews: Mapping[int, CasePreview] | None = None,
    readiness: Sequence[tuple[str, str]] = (),
) -> None:
    """The page: site summary, whether the site can take part (`readiness`: (kind,
    sentence) lines, as `site check` prints them), how to read it, then every case (failed
    first) with its status, reasons and, given `previews` (manifest line -> preview), its
    thumbnails.

    `statuses` are in manifest order, one per row of `plan.entries`."""
    previews = previews or {}
    sequences = [*plan.layout.sequences, *plan.layout.missing_sequences] if previews else []
    cases = sorted(
        zip(statuses, (previews.get(entry.line) for entry in plan.entries), strict=True),
        key=lambda case: _ORDER.get(case[0].status, 2),
    )
    headers = "".join(f"<th>{_e(name)}</th>" for name in sequences)
    headers += "<th>regions (voxels)</th>" if previews else ""
    rows = "\n".join(_row(status, preview) for status, preview in cases)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    about = "".join(f"<li>{_e(line)}</li>" for line in site_lines(plan))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FedRad QC: {_e(plan.site_name)}</title>
<style>{_STYLE}</style></head><body>
<h1>QC report: site {_e(plan.site_name)}</h1>
<p>{_e(summary(statuses))}. Extraction hash {_e(study_hash)}; written {created}.</p>
<p class="local">This page stays at the site: it is the file {_e(path.name)} in the
site's output folder {_e(str(path.absolute().parent))}. FedRad never sends it, nor any image, to the
study.</p>
<ul>{about}</ul>
{_readiness(readiness)}
{_how_to_read(plan.layout.regions) if previews else ""}
<input type="radio" name="show" id="show-all" checked><label for="show-all">all cases</label>
<input type="radio" name="show" id="show-flagged"><label for="show-flagged">failed and
warnings</label>
<input type="radio" name="show" id="show-failed"><label for="show-failed">failed only</label>
<table><thead><tr><th>case id</th><th>label</th><th>status</th><th>stage</th>
<th>problems / notes</th>{headers}</tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


def _readiness(lines: Sequence[tuple[str, str]]) -> str:
    if not lines:
        return ""
    items = "".join(f'<li class="{kind}">{_e(sentence)}</li>' for kind, sentence in lines)
    return f'<h2>Can this site take part?</h2><ul id="readiness">{items}</ul>'


def _how_to_read(regions: Mapping[str, tuple[int, ...]]) -> str:
    low, high = WINDOW_PERCENTILES
    legend = " ".join(f"{_swatch(position)}{_e(region)}" for position, region in enumerate(regions))
    return (
        "<p>Each thumbnail is the axial slice where the tumour (all regions together) is "
        "largest, shown the radiological way (the patient's right on the left), greys from "
        f"percentile {low:g} to {high:g} of the head in that slice. Outlines: "
        f"{legend or 'none (no regions)'} (where outlines meet, the later one shows).</p>"
    )


def _row(status: CaseStatus, preview: CasePreview | None) -> str:
    cells = [
        _e(status.case_id),
        _e(status.label or ""),
        status.status,
        _e(status.stage),
        "<br>".join(_e(line) for line in [*status.problems, *status.notes]),
    ]
    if preview is not None:
        cells += [_sequence_cell(status.case_id, view) for view in preview.views]
        cells.append(_regions_cell(preview))
    return f'<tr class="{status.status}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _sequence_cell(case_id: str, view: SequenceView) -> str:
    if view.thumbnail is None:
        return f'<div class="absent">{_e(view.absent)}</div>'
    shot = view.thumbnail
    source = "data:image/png;base64," + base64.b64encode(shot.png).decode("ascii")
    spacing = " &times; ".join(f"{value:.3g}" for value in view.spacing)
    low, high = view.intensity_range or (float("nan"), float("nan"))
    return (
        f'<figure><img src="{source}" alt="{_e(view.name)} of {_e(case_id)}, axial slice '
        f'{shot.slice_index + 1} of {shot.slices}"><figcaption>{_e(view.name)}: slice '
        f"{shot.slice_index + 1}/{shot.slices}, {spacing} mm<br>range {low:.4g} to "
        f"{high:.4g}, shown {shot.window[0]:.4g} to {shot.window[1]:.4g}</figcaption></figure>"
    )


def _regions_cell(preview: CasePreview) -> str:
    lines = [
        f"{_swatch(position)}{_e(region)} {voxels:,}"
        for position, (region, voxels) in enumerate(preview.region_voxels.items())
    ]
    if preview.mask_problem:
        lines.append(f"{_e(preview.mask_problem)}: middle slice, no outlines")
    return "<br>".join(lines)


def _swatch(position: int) -> str:
    red, green, blue = region_colour(position)
    return f'<span class="swatch" style="background: rgb({red}, {green}, {blue})"></span>'


def _e(text: str) -> str:
    return html.escape(str(text))
