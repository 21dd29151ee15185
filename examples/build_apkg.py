"""Packs an agent folder into an APKG (a zip archive) with stable timestamps.

Usage: python3 build_apkg.py SOURCE_DIR OUTPUT.apkg
"""

import os
import sys
import zipfile


def build(source: str, output: str) -> None:
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for dirpath, dirnames, filenames in sorted(os.walk(source)):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                info = zipfile.ZipInfo(os.path.relpath(path, source), date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
                with open(path, "rb") as handle:
                    archive.writestr(info, handle.read())


if __name__ == "__main__":
    build(sys.argv[1], sys.argv[2])
