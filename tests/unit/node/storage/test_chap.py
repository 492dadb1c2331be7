"""CHAP for QEMU's iSCSI client: the password goes through a 0600 secret file only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from overt.node.storage import chap
from overt.node.storage.iscsi_domain import image_json, lun_options, lun_url, window
from overt.protocol.storage import IscsiLunRef
from overt.protocol.vm import ChapAuth, DiskFormat

SECRET = "Chap-Secret-0451"
IQN = "iqn.2024-01.dev.overt:chap"
AUTH = ChapAuth(username="overt-init", password=SECRET)
LUN = IscsiLunRef(portal="10.77.1.10", target=IQN, lun=1, chap=AUTH)


def test_image_options_name_the_user_and_the_secret_object_never_the_password() -> None:
    options = lun_options(LUN)
    assert options.endswith(f"user=overt-init,password-secret={chap.secret_id(IQN)}")
    header = image_json(window(LUN, 4 << 20, 1 << 24, DiskFormat.QCOW2))
    tree = json.loads(header.removeprefix("json:"))
    assert tree["file"]["file"]["password-secret"] == chap.secret_id(IQN)
    assert SECRET not in options + header + lun_url(LUN) + repr(LUN)
    plain = LUN.model_copy(update={"chap": None})
    assert "user=" not in lun_options(plain) and "password" not in window(plain, 0, 512)


def test_secret_objects_are_0600_files_that_go_with_the_block() -> None:
    with chap.secret_objects([(IQN, AUTH), (IQN, AUTH), ("iqn.2024-01.x:y", None)]) as args:
        assert args[0] == "--object" and len(args) == 2  # one per target with CHAP
        fields = dict(part.split("=", 1) for part in args[1].split(",")[1:])
        assert fields["id"] == chap.secret_id(IQN) and SECRET not in args[1]
        path = Path(fields["file"])
        assert path.read_text() == SECRET
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()
    with chap.secret_objects([(IQN, None)]) as none:
        assert none == []
    assert chap.with_objects(["qemu-img", "info", "x"], ["--object", "o"]) == [
        "qemu-img", "info", "--object", "o", "x"]


def test_a_refused_login_is_recognised_and_the_password_scrubbed() -> None:
    assert chap.refused_login("qemu-img: Could not open 'json:...': iSCSI: Failed to connect "
                              "to LUN : Failed to log in to target. Status: Authorization "
                              "failure(514)")
    assert not chap.refused_login("Could not open: No route to host")
    assert chap.scrub(f"echoed {SECRET}", AUTH) == "echoed ***"
