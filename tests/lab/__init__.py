"""Tests of the lab tooling (lab/bundle)."""
