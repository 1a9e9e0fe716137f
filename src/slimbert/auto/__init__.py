"""`slimbert auto`: from a teacher and a latency objective to the student to ship (run.py)."""
