"""What `site predict` prints: the model applied, how each case was harmonized, and every
case's result or the reason it has none."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fedrad.client.predict import Predictions
from fedrad.common.model_bundle import ModelBundle


def print_predictions(predictions: Predictions, bundle: ModelBundle, console: Console) -> None:
    payload = bundle.payload
    console.print(
        f"model: {escape(payload['study']['name'])}, run {escape(payload['run_id'])}, "
        f"{escape(payload['model']['kind'])} trained at "
        f"{escape(', '.join(bundle.training_sites))}; threshold {bundle.threshold:.3f} "
        f"({escape(payload['threshold']['rule'])})"
    )
    frame = predictions.table
    for how in sorted({h for h in frame["harmonization"] if "label-free" in h}):
        console.print(f"[yellow]harmonization:[/yellow] {escape(how)}")
    probability = f"probability_{predictions.positive}"
    table = Table("case id", "status", f"P({predictions.positive})", "class", "top features")
    for row in frame.itertuples(index=False):
        row = row._asdict()
        if row["status"] == "predicted":
            cells = (f"{row[probability]:.3f}", row["predicted_class"], row["top_features"])
        else:
            cells = ("", "", row["reason"])
        table.add_row(Text(str(row["case_id"])), row["status"], *map(Text, cells))
    console.print(table)
    done = int((frame["status"] == "predicted").sum())
    console.print(f"{done} of {len(frame)} case(s) predicted -> {escape(str(predictions.path))}")
