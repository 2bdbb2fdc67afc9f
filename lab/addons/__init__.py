"""Lab side of the cluster add-ons (issue 4): charts from the Go module proxy, Pebble's TLS, inventory settings.

``python3 -m lab.addons prepare`` (after the lab inventory exists; ``make lab`` should call :func:`prepare`):

* copies the Helm charts the add-on roles template from the Go modules (downloaded with ``go mod download``,
  i.e. checked against the Go checksum database) into ``<cache>/lab-addons/charts/<name>-<version>/``; the
  cert-manager v1.11.5 chart is assembled from its chart template the way its release tooling does;
* creates a throw-away CA and the TLS certificate of the in-cluster Pebble ACME server (``build/lab/addons/``);
* writes ``inventories/lab/group_vars/all/addons.yml``: every add-on role pointed at the lab's sources (the bundle's
  images, the local charts) through its ordinary variables, Pebble as the xiu ClusterIssuer, and the fixed
  LoadBalancer address of the ingress controller (first address of the lab's MetalLB range);
* records the add-on endpoints in ``build/lab/endpoints.json`` (key ``addons``).
"""
