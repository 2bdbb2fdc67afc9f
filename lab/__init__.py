"""Local lab tooling: node containers, inventory, checks (``python3 -m lab``) and the air-gap bundle (``lab.bundle``)."""
