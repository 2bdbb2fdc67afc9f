"""Air-gap bundle builder: Kubernetes binaries and images built from package registries only.

Run ``python3 -m lab.bundle build`` from the repository root; see lab/bundle/README.md.
"""

# Bump when the bundle layout or the way artefacts are produced changes in a way the pins do not show:
# it is part of every cache key, so a bump rebuilds everything once.
BUNDLE_FORMAT = 1
