"""The store's revisions, oldest first: 0001 the baseline, 0002 who started a run."""
