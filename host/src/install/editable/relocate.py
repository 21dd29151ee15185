"""Moves the agent's prebuilt editable wheel to the tree it installs from.

An editable wheel's files name the package's tree: a `.pth` line, a finder's
mapping. par builds the wheel once, for a bundle, and each load installs it
for a tree of its own. This writes a copy of WHEEL into OUT_DIR, under the
same name, with every FROM in every file's contents (as a whole path, not
the start of a longer name) replaced by TO, and its RECORD written anew;
and beside it `requires.txt`, the wheel's `Requires-Dist` values, one a
line, for the host to check. It is run with a fresh interpreter in isolated mode,
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
        rows = []
        with zipfile.ZipFile(os.path.join(out_dir, os.path.basename(wheel)), "x") as target:
            for info in infos:
                if info.filename == records[0]:
                    continue
                data = pattern.sub(lambda _: new, source.read(info))
                moved = zipfile.ZipInfo(info.filename, DATE)
                moved.external_attr = info.external_attr
                target.writestr(moved, data)
                rows.append((info.filename, record_hash(data), len(data)))
            rows.append((records[0], "", ""))
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            record = zipfile.ZipInfo(records[0], DATE)
            record.external_attr = 0o644 << 16
            target.writestr(record, text.getvalue())


try:
    main(*sys.argv[1:])
except Exception as error:
    sys.exit(f"the editable wheel {os.path.basename(sys.argv[1])} cannot be moved to its tree: {error}")
