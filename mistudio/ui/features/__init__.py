"""The Features tab: browse, understand and label every feature of an SAE."""
