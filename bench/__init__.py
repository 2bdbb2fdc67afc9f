"""`make bench`: bounded load and timing measurements of xiu on loopback and in the lab (issue 6)."""
