"""The Templates tab: training and extraction templates and steering presets as cards."""
