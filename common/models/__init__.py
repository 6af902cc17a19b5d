"""Models the federation fits: ridge and L1 logistic regression (exact), the MLP."""
