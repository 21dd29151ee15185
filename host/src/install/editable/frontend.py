"""par's PEP 517 frontend for the agent's editable wheel.

pip and uv start a fresh interpreter for each build hook; this runs the two
an editable install needs in one. It is run with the build environment's
Python in isolated mode (-I), from the package directory, as

    python -I -c <this file> BACKEND WHEEL_DIR [BACKEND_PATH ...]

and leaves either one wheel in WHEEL_DIR, or a `fallback.txt` there saying
why the installer's own `-e` should do the build instead (the backend asks
for build requirements the environment lacks, or has no PEP 660 hook).
"""

import importlib
import os
import sys


def fallback(wheel_dir, reason):
    with open(os.path.join(wheel_dir, "fallback.txt"), "w", encoding="utf-8") as f:
        f.write(reason)


def main(backend_spec, wheel_dir, *backend_path):
    # PEP 517: in-tree backend directories come first on sys.path.
    sys.path[:0] = [os.path.abspath(path) for path in backend_path]
    module_name, _, attributes = backend_spec.partition(":")
    backend = importlib.import_module(module_name.strip())
    for attribute in filter(None, attributes.strip().split(".")):
        backend = getattr(backend, attribute)
    build_editable = getattr(backend, "build_editable", None)
    if build_editable is None:
        return fallback(wheel_dir, f"{backend_spec} has no build_editable hook (PEP 660)")
    get_requires = getattr(backend, "get_requires_for_build_editable", None)
    requires = get_requires({}) if get_requires else []
    if requires:
        return fallback(wheel_dir, f"{backend_spec} asks for more build requirements: {', '.join(requires)}")
    build_editable(wheel_dir, {})


main(*sys.argv[1:])
