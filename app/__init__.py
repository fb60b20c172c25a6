"""The application floor: what train.py, evaluate.py and the other commands share (README, "Layout")."""
