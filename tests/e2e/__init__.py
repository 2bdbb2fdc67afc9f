"""End-to-end tier (issue 5): the mission on the lab, through its public endpoints. See tests/e2e/run.py."""
