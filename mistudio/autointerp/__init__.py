"""Auto-interpretation (issue #14): a local instruct model explains SAE features from their
analysis (delphi's prompts) and scores the explanations (detection, fuzzing). Qt-free."""
