"""The spec's flow, done the way the Python runtime did it, as the baseline
`par load` is measured against:

    unzip -> python -m venv -> pip install -r requirements.txt
           -> pip install -e . -> python -c "import <entrypoint module>"

Usage: python3 baseline_pip.py APKG DEST   (DEST must not exist)
"""

import os
import subprocess
import sys
import zipfile


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def entrypoint_module(manifest):
    for line in manifest.splitlines():
        if line.startswith("entrypoint:"):
            value = line.split(":", 1)[1].strip().strip("'\"")
            return value.split(":", 1)[0]
    return None


def main(apkg, dest):
    package = os.path.join(dest, "package")
    venv = os.path.join(dest, "venv")
    os.makedirs(dest)
    with zipfile.ZipFile(apkg) as archive:
        archive.extractall(package)
    run(sys.executable, "-m", "venv", venv)
    python = os.path.join(venv, "bin", "python")
    pip = (python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet")
    requirements = os.path.join(package, "requirements.txt")
    if os.path.exists(requirements):
        with open(requirements) as f:
            if any(line.strip() and not line.lstrip().startswith("#") for line in f):
                run(*pip, "-r", requirements)
    if any(os.path.exists(os.path.join(package, name)) for name in ("setup.py", "pyproject.toml")):
        run(*pip, "-e", package)
    with open(os.path.join(package, "agent.yaml")) as f:
        module = entrypoint_module(f.read())
    if module:
        subprocess.run([python, "-c", f"import {module}"], check=True, cwd=dest)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
