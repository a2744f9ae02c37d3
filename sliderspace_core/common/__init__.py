"""The shared base of all three systems: errors, safe files, the sigma schedule, text specs, low-rank
math, drawing, metrics and image encoders. Imports no system package."""
