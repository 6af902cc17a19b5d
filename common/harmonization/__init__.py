"""Harmonization of scanner effects: ComBat and its exact distributed form."""
