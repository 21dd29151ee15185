"""Moves the agent's prebuilt editable wheel to the tree it installs from.

An editable wheel's files name the package's tree: a `.pth` line, a finder's
mapping. par builds the wheel once, for a bundle, and each load installs it
for a tree of its own. This writes a copy of WHEEL into OUT_DIR, under the
same name, with every FROM in every file's contents (as a whole path, not
the start of a longer name) replaced by TO, and its RECORD written anew;
and beside it `requires.txt`, the wheel's `Requires-Dist` values, one a
line, for the host to check. When the wheel holds only what goes into
site-packages (no `.data` directory, no script entry points) and every
name is a plain relative path, it also writes `installed/`: the wheel's
files as they lie in site-packages once installed, with `INSTALLER`,
`REQUESTED` and `RECORD` as an installer writes them, for the host to
place into the venv without an installer. It is run with a fresh interpreter in isolated mode,
without `site` (-I -S), confined as an install step (never in the process
that ran the build), as

    python -I -S -c <this file> WHEEL OUT_DIR TO FROM [FROM ...]

and exits non-zero, saying why, on a wheel it cannot move.
"""

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import sys
import zipfile

# Fixed, so the same wheel moved to the same tree makes the same bytes.
DATE = (1980, 1, 1, 0, 0, 0)


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def requires_dist(metadata):
    """The `Requires-Dist` values of METADATA's headers, each on one line."""
    headers = []
    for line in metadata.decode("utf-8").splitlines():
        if not line.strip():
            break
        if line[0] in " \t" and headers:
            headers[-1] += " " + line.strip()
        else:
            headers.append(line)
    return [" ".join(h.split(":", 1)[1].split()) for h in headers if h.lower().startswith("requires-dist:")]


def has_scripts_or_data(source, dist_info):
    """Whether the wheel installs anything outside site-packages."""
    names = [info.filename for info in source.infolist()]
    if any(name.split("/", 1)[0].endswith(".data") for name in names):
        return True
    entry_points = dist_info + "entry_points.txt"
    if entry_points not in names:
        return False
    section = None
    for line in source.read(entry_points).decode("utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[] ")
        elif line and not line.startswith(("#", ";")) and section in ("console_scripts", "gui_scripts"):
            return True
    return False


def is_plain(name):
    """Whether a member's name is a relative path of ordinary components."""
    parts = name.split("/")
    return all(part not in ("", ".", "..") and "\\" not in part and "\0" not in part for part in parts)


def write_installed(out_dir, record, files):
    """Writes `installed/`: each (name, data, mode) of FILES, and the
    dist-info's INSTALLER, REQUESTED and RECORD."""
    root = os.path.join(out_dir, "installed")
    dist_info = record[: -len("RECORD")]
    files = files + [(dist_info + "INSTALLER", b"par\n", 0o644), (dist_info + "REQUESTED", b"", 0o644)]
    for name, data, mode in files:
        path = os.path.join(root, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "xb") as out:
            out.write(data)
        os.chmod(path, mode)
    with open(os.path.join(root, *record.split("/")), "x", encoding="utf-8", newline="") as out:
        out.write(record_text(record, files))


def record_text(record, files):
    """RECORD for the (name, data, mode) of FILES, itself listed last."""
    rows = [(name, record_hash(data), len(data)) for name, data, _ in files] + [(record, "", "")]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def main(wheel, out_dir, to, *sources):
    new = to.encode()
    # Longest first, and never where a longer name goes on.
    olds = sorted({source.encode() for source in sources}, key=len, reverse=True)
    pattern = re.compile(b"(?:" + b"|".join(map(re.escape, olds)) + rb")(?![A-Za-z0-9._+@=-])")
    with zipfile.ZipFile(wheel) as source:
        infos = [info for info in source.infolist() if not info.is_dir()]
        records = [i.filename for i in infos if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise ValueError(f"{len(records)} .dist-info/RECORD files in it, not one")
        metadata = records[0][: -len("RECORD")] + "METADATA"
        with open(os.path.join(out_dir, "requires.txt"), "x", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in requires_dist(source.read(metadata))))
        files = []
        with zipfile.ZipFile(os.path.join(out_dir, os.path.basename(wheel)), "x") as target:
            for info in infos:
                if info.filename == records[0]:
                    continue
                data = pattern.sub(lambda _: new, source.read(info))
                moved = zipfile.ZipInfo(info.filename, DATE)
                moved.external_attr = info.external_attr
                target.writestr(moved, data)
                files.append((info.filename, data, 0o755 if (info.external_attr >> 16) & 0o111 else 0o644))
            record = zipfile.ZipInfo(records[0], DATE)
            record.external_attr = 0o644 << 16
            target.writestr(record, record_text(records[0], files))
        names = [name for name, _, _ in files]
        plain = all(map(is_plain, names)) and len(set(names)) == len(names)
        if plain and not has_scripts_or_data(source, metadata[: -len("METADATA")]):
            try:
                write_installed(out_dir, records[0], files)
            except OSError:
                # One name a file and a directory, say: the installer decides.
                shutil.rmtree(os.path.join(out_dir, "installed"), ignore_errors=True)


try:
    main(*sys.argv[1:])
except Exception as error:
    sys.exit(f"the editable wheel {os.path.basename(sys.argv[1])} cannot be moved to its tree: {error}")
