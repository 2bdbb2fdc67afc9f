"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads from a host outside the
package registries (unreachable here). `make sanity` copies it to ~/.ansible/test/cache/get_pip_<ver>.py.

ansible-test runs it inside each fresh, pip-less venv with arguments such as
`--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel`, in an environment stripped of PIP_*
and SSL variables. So: bootstrap pip from the interpreter's own ensurepip, give the venv a pip.conf that
carries the CA bundle `make sanity` found (STREAMOPS_PIP_CERT, written next to this script's copy), then
install the requested packages like get-pip.py would.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel", "--no-pip"}


def ca_bundle() -> str:
    """CA bundle recorded by `make sanity` (empty when it found none)."""
    cert_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "streamops_pip_cert")
    if not os.path.exists(cert_file):
        return ""
    with open(cert_file, encoding="utf-8") as handle:
        cert = handle.read().strip()
    return cert if cert and os.path.exists(cert) else ""


def main() -> int:
    cert = ca_bundle()
    if cert:
        # Later pip runs of ansible-test in this venv read the site pip.conf.
        with open(os.path.join(sys.prefix, "pip.conf"), "w", encoding="utf-8") as handle:
            handle.write(f"[global]\ncert = {cert}\n")
    ensurepip.bootstrap(upgrade=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    if cert:
        args = ["--cert", cert, *args]
    return subprocess.call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    sys.exit(main())
