"""network.rpk from the bundle's packerOut.zip, on the device."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from .files import (
    RELEASE_FILE,
    Failure,
    base_dir,
    incoming_dir,
    read_release,
    remove_tree,
    safe_relative,
    sha256_of,
    tail,
    write_file,
)
from .lock import require_lock

IMX500_PACKAGER = "imx500-package"
IMX500_INSTALL = "sudo apt install -y imx500-all (Raspberry Pi OS: the IMX500 firmware and tools)"


def imx500(payload):
    """Make ``NAME_imx500.rpk`` beside the verified release's ``NAME_imx500.zip`` with
    imx500-package, read-only, its sha256 added to release.json; before the switch. With
    ``expect_sha256`` (a release made before) an .rpk that differs is removed and refused."""
    require_lock(payload)
    base = base_dir(payload)
    incoming = incoming_dir(base, payload["release"])
    packed = os.path.join(incoming, safe_relative(payload["artifact"]))
    if not os.path.isfile(packed):
        raise Failure(f"{payload['artifact']} is not in the release", code="imx500_missing")
    packager = shutil.which(IMX500_PACKAGER)
    if packager is None:
        raise Failure(f"the bundle's imx500 artifact needs {IMX500_PACKAGER} on the device to "
                      f"become network.rpk, and it is not there: {IMX500_INSTALL}",
                      code="imx500_tools_missing")
    rpk = packed[:-len(".zip")] + ".rpk"
    work = os.path.join(incoming, ".imx500-work")
    remove_tree(work)
    os.makedirs(work)
    try:
        try:
            done = subprocess.run([packager, "-i", packed, "-o", work], capture_output=True,
                                  timeout=payload.get("timeout", 600), check=False)
        except subprocess.TimeoutExpired:
            raise Failure(f"{IMX500_PACKAGER} did not finish", code="imx500_package") from None
        made = os.path.join(work, "network.rpk")
        if done.returncode != 0 or not os.path.isfile(made):
            why = tail((done.stderr or done.stdout).decode("utf-8", "replace"), 1) or "no output"
            raise Failure(f"{IMX500_PACKAGER} failed on the device: {why}",
                          code="imx500_package")
        digest = sha256_of(made)
        expected = payload.get("expect_sha256")
        if expected and digest != expected:
            raise Failure(f"the network.rpk {IMX500_PACKAGER} made on the device has sha256 "
                          f"{digest[:12]}..., not the release's {expected[:12]}...: another "
                          "imx500-tools version? Deploy again to record the new one",
                          code="imx500_sha256")
        os.replace(made, rpk)
        os.chmod(rpk, 0o444)
    finally:
        remove_tree(work)
    entry = {"path": os.path.relpath(rpk, incoming), "sha256": digest,
             "size": os.path.getsize(rpk)}
    record = read_release(incoming)
    if record is not None:  # verified: the .rpk joins the files the release vouches for
        record["files"] = [f for f in record.get("files", []) if f["path"] != entry["path"]]
        record["files"].append(entry)
        record["imx500_rpk"] = entry
        record_path = os.path.join(incoming, RELEASE_FILE)
        write_file(record_path, json.dumps(record, indent=1) + "\n")
        os.chmod(record_path, 0o444)
    return {"rpk": entry}
