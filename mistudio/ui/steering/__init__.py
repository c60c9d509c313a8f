"""The Steering tab."""
