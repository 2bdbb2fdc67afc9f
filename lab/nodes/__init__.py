"""Lab nodes: the Debian 12 systemd node image, the Docker network and the node containers."""
