"""What a coordinator reads of a run: terminal tables and report.html."""
