"""The pure core: the study model and the rules of the trial, stdlib only."""
